"""OpenAI's Files and Batch API on gauge serve (mock engine), through the openai SDK."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import openai
import orjson
import pytest

from gauge.errors import ConfigError
from gauge.serve.batch_run import check_input
from gauge.serve.engines.mock import MockEngine
from gauge.serve.settings import load_settings

CHAT: Final = "/v1/chat/completions"
COMPLETIONS: Final = "/v1/completions"
DONE = ("completed", "failed", "cancelled", "expired")

_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def sdk(server: Any, key: str = "none") -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
    _clients.append(client)
    return client


def chat_line(custom_id: str, text: str, model: str = "mock-model", **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    body = {"model": model, "messages": messages, **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def upload(client: openai.OpenAI, data: bytes, name: str = "in.jsonl") -> str:
    return client.files.create(file=(name, data), purpose="batch").id


def start(client: openai.OpenAI, data: bytes, endpoint: str = CHAT) -> Any:
    file_id = upload(client, data)
    return client.batches.create(
        input_file_id=file_id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    )


def wait(client: openai.OpenAI, batch_id: str, until: Any = None, timeout: float = 120) -> Any:
    """Poll the batch until it ends (or `until(batch)` holds); the last batch seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if (until or (lambda b: b.status in DONE))(batch):
            return batch
        if batch.status in DONE:
            raise AssertionError(f"batch {batch_id} ended {batch.status} first: {batch}")
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [orjson.loads(line) for line in client.files.content(file_id).content.splitlines()]


def test_a_batch_answers_as_the_real_time_route_does(serve: Any) -> None:
    client = sdk(serve())
    texts = {f"q{i}": f"question number {i}" for i in range(5)}
    lines = [chat_line(cid, text, max_tokens=2) for cid, text in texts.items()]
    created = start(client, jsonl(lines))
    assert created.status == "validating" and created.endpoint == CHAT
    assert created.expires_at == created.created_at + 24 * 3600
    batch = wait(client, created.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (5, 5)
    assert batch.request_counts.failed == 0 and batch.error_file_id is None
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.output_file_id is not None
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert output.filename == f"{batch.id}_output.jsonl"
    got = {line["custom_id"]: line for line in lines_of(client, batch.output_file_id)}
    assert set(got) == set(texts)
    for cid, text in texts.items():
        line = got[cid]
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        live = client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": text}], max_tokens=2
        )
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == live.choices[0].message.content
        assert body["choices"][0]["message"]["content"] == " ".join(text.split()[:2])
        assert body["choices"][0]["finish_reason"] == live.choices[0].finish_reason == "length"
        assert live.usage is not None
        assert body["usage"] == live.usage.model_dump(exclude_none=True)
    assert batch.usage is not None and batch.usage.output_tokens == 10


def test_a_completions_batch(serve: Any) -> None:
    client = sdk(serve())
    line = {
        "custom_id": "c1",
        "method": "POST",
        "url": COMPLETIONS,
        "body": {"model": "mock-model", "prompt": "one two three", "max_tokens": 5},
    }
    batch = wait(client, start(client, jsonl([line]), COMPLETIONS).id)
    [out] = lines_of(client, batch.output_file_id)
    assert out["response"]["body"]["choices"][0]["text"] == "one two three"


def test_malformed_lines_fail_the_batch_naming_each_line(serve: Any) -> None:
    client = sdk(serve())
    good = chat_line("a", "fine")
    data = b"\n".join(
        [
            orjson.dumps(good),
            b"{not json",
            b"[1, 2]",
            orjson.dumps({k: v for k, v in good.items() if k != "custom_id"}),
            orjson.dumps(good),  # custom_id "a" again
            orjson.dumps(chat_line("b", "x") | {"url": COMPLETIONS}),
            orjson.dumps(chat_line("c", "x") | {"method": "GET"}),
            b"",
            orjson.dumps(chat_line("d", "x") | {"body": "text"}),
        ]
    )
    batch = wait(client, start(client, data).id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.in_progress_at is None
    assert batch.errors is not None and batch.errors.data is not None
    found = [(e.line, e.code, e.param) for e in batch.errors.data]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "invalid_json_line", None),
        (4, "missing_required_parameter", "custom_id"),
        (5, "duplicate_custom_id", "custom_id"),
        (6, "url_mismatch", "url"),
        (7, "invalid_request", "method"),
        (9, "invalid_request", "body"),
    ]
    messages = [e.message or "" for e in batch.errors.data]
    assert "not valid JSON" in messages[0]
    assert "custom_id 'a' is on an earlier line" in messages[3]
    assert f"is not the batch's endpoint '{CHAT}'" in messages[4]


def test_an_empty_file_fails_and_check_input_counts_requests(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n\n")
    count, errors = check_input(path, CHAT)
    assert count == 0 and [e["code"] for e in errors] == ["empty_file"]
    path.write_bytes(jsonl([chat_line(str(i), "x") for i in range(3)]))
    assert check_input(path, CHAT) == (3, [])


def test_a_line_for_another_model_or_with_a_bad_field_is_that_lines_error(serve: Any) -> None:
    client = sdk(serve())
    lines = [
        chat_line("ok1", "hello there"),
        chat_line("wrong-model", "hi", model="gpt-4o"),
        chat_line("bad-field", "hi", temperature="hot"),
        chat_line("streamed", "hi", stream=True),
        chat_line("ok2", "bye now"),
    ]
    batch = wait(client, start(client, jsonl(lines)).id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 3)
    outputs = {line["custom_id"] for line in lines_of(client, batch.output_file_id)}
    assert outputs == {"ok1", "ok2"}
    errors = {line["custom_id"]: line for line in lines_of(client, batch.error_file_id)}
    assert set(errors) == {"wrong-model", "bad-field", "streamed"}
    wrong = errors["wrong-model"]["response"]
    assert wrong["status_code"] == 404
    assert wrong["body"]["error"]["message"] == (
        "the model 'gpt-4o' does not exist; this server serves 'mock-model'"
    )
    assert wrong["body"]["error"]["code"] == "model_not_found"
    assert errors["bad-field"]["response"]["status_code"] == 400
    assert errors["bad-field"]["response"]["body"]["error"]["param"] == "temperature"
    assert errors["streamed"]["response"]["body"]["error"]["param"] == "stream"
    assert all(line["error"] is None for line in errors.values())
    assert client.files.retrieve(batch.error_file_id or "").filename == f"{batch.id}_error.jsonl"


def test_cancel_mid_run_keeps_the_answers_so_far(serve: Any) -> None:
    server = serve(MockEngine("mock-model", latency=0.05), batch_concurrency=2)
    client = sdk(server)
    created = start(client, jsonl([chat_line(f"r{i}", f"n {i}") for i in range(200)]))

    def some_done(b: Any) -> bool:
        return b.status == "in_progress" and b.request_counts.completed >= 4

    wait(client, created.id, some_done)
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    batch = wait(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.completed_at is None
    assert batch.request_counts is not None
    done = batch.request_counts.completed
    assert 4 <= done < 200 and batch.request_counts.total == 200
    answered = lines_of(client, batch.output_file_id)
    assert len(answered) == done
    assert all(line["response"]["status_code"] == 200 for line in answered)
    assert client.batches.cancel(created.id).status == "cancelled"  # again: no change
    with pytest.raises(openai.ConflictError, match="only a validating or in_progress batch"):
        client.batches.cancel(wait(client, start(client, jsonl([chat_line("x", "y")])).id).id)


def test_an_expired_batch_keeps_its_answers_and_lists_the_rest_as_expired(serve: Any) -> None:
    server = serve(MockEngine("mock-model", latency=0.05), batch_concurrency=1)
    client = sdk(server)
    created = start(client, jsonl([chat_line(f"r{i}", f"n {i}") for i in range(100)]))
    wait(client, created.id, lambda b: b.request_counts.completed >= 3)
    store = server.app.state.batch_api.batches
    store.clock = lambda: time.time() + 25 * 3600  # past the 24h window
    batch = wait(client, created.id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert counts.completed >= 3 and counts.completed + counts.failed == counts.total == 100
    expired = lines_of(client, batch.error_file_id)
    assert len(expired) == counts.failed
    assert {line["error"]["code"] for line in expired} == {"batch_expired"}
    assert all(line["response"] is None for line in expired)
    answered = {line["custom_id"] for line in lines_of(client, batch.output_file_id)}
    assert answered.isdisjoint(line["custom_id"] for line in expired)


def test_real_time_requests_are_answered_while_a_batch_runs(serve: Any) -> None:
    server = serve(MockEngine("mock-model", latency=0.02), batch_concurrency=2)
    client = sdk(server)
    created = start(client, jsonl([chat_line(f"r{i}", "x") for i in range(300)]))
    wait(client, created.id, lambda b: b.status == "in_progress")
    reply = client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "live one"}]
    )
    assert reply.choices[0].message.content == "live one"
    assert client.batches.retrieve(created.id).status == "in_progress"
    client.batches.cancel(created.id)
    wait(client, created.id)


def test_lists_page_newest_first_and_follow_the_cursor(serve: Any) -> None:
    client = sdk(serve())
    file_id = upload(client, jsonl([chat_line("a", "b")]))
    made = [
        client.batches.create(
            input_file_id=file_id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"n": str(i)},
        ).id
        for i in range(5)
    ]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    assert [b.id for b in client.batches.list(limit=2)] == made[::-1]  # auto-pagination
    assert [b.id for b in client.batches.list(limit=2, after=made[1]).data] == [made[0]]
    with pytest.raises(openai.NotFoundError, match="pass the last_id of the page before"):
        client.batches.list(after="batch_nope")
    with pytest.raises(openai.BadRequestError, match="limit='500' is not valid"):
        client.batches.list(limit=500)
    for batch_id in made:
        wait(client, batch_id)
    inputs = client.files.list(purpose="batch")
    assert [f.id for f in inputs] == [file_id]
    outputs = list(client.files.list(purpose="batch_output", limit=2))
    assert len(outputs) == 5
    ascending = [f.id for f in client.files.list(order="asc")]
    assert ascending[0] == file_id and len(ascending) == 6
    assert [f.id for f in client.files.list(order="desc")] == ascending[::-1]


def test_unknown_ids_are_404s_in_openais_shape(serve: Any) -> None:
    client = sdk(serve())
    with pytest.raises(openai.NotFoundError, match="no batch with id 'batch_nope'") as info:
        client.batches.retrieve("batch_nope")
    assert info.value.body == {
        "message": "no batch with id 'batch_nope': GET /v1/batches lists the batches this "
        "server has",
        "type": "invalid_request_error",
        "param": "batch_id",
        "code": "batch_not_found",
    }
    with pytest.raises(openai.NotFoundError, match="no batch with id"):
        client.batches.cancel("batch_nope")
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError, match="no file with id 'file-nope'"):
            call("file-nope")
    with pytest.raises(openai.NotFoundError, match="no file with id 'file-nope'") as info:
        client.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "input_file_id"


def test_bad_requests_get_one_line_saying_what_to_do(serve: Any) -> None:
    client = sdk(serve(batch_max_file_mb=1))
    data = jsonl([chat_line("a", "b")])
    with pytest.raises(openai.BadRequestError, match="use purpose=batch"):
        client.files.create(file=("in.jsonl", data), purpose="fine-tune")
    with pytest.raises(openai.APIStatusError, match="over this server's limit") as big:
        client.files.create(file=("big.jsonl", b"x" * (1024 * 1024 + 1)), purpose="batch")
    assert big.value.status_code == 413
    file_id = upload(client, data)
    bad: dict[str, Any] = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"endpoint": "/v1/embeddings"}, "is not one this server runs in a batch"),
        ({"completion_window": "1h"}, "completion_window '1h' is not supported: use '24h'"),
        ({"metadata": {"k": "v" * 513}}, "metadata must be an object of at most 16 entries"),
    ]
    for change, message in cases:
        with pytest.raises(openai.BadRequestError, match=message):
            client.batches.create(**(bad | change))
    output = wait(client, client.batches.create(**bad).id).output_file_id
    with pytest.raises(openai.BadRequestError, match="has purpose 'batch_output'"):
        client.batches.create(**(bad | {"input_file_id": output}))
    with pytest.raises(openai.BadRequestError, match="'output_expires_after' is not supported"):
        client.batches.create(
            **bad,
            output_expires_after={"anchor": "created_at", "seconds": 3600},
        )


def test_a_chunked_upload_is_cut_off_at_the_limit(serve: Any) -> None:
    import http.client

    server = serve(batch_max_file_mb=1)
    head = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
    parts = [head, *([b"x" * 65536] * 40), b"\r\n--XX--\r\n"]  # 2.5 MiB, no length sent
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/files",
            body=iter(parts),
            headers={"Content-Type": "multipart/form-data; boundary=XX"},
            encode_chunked=True,
        )
        reply = conn.getresponse()
        status, body = reply.status, orjson.loads(reply.read())
    finally:
        conn.close()
    assert status == 413 and "over this server's limit of 1048576 bytes" in body["error"]["message"]
    assert server.app.state.batch_api.files.objects == {}


def test_a_running_batchs_input_cannot_be_deleted_and_a_deleted_file_is_gone(
    serve: Any,
) -> None:
    client = sdk(serve(MockEngine("mock-model", latency=0.05), batch_concurrency=1))
    created = start(client, jsonl([chat_line(f"r{i}", "x") for i in range(100)]))
    with pytest.raises(openai.ConflictError, match="cancel the batch or wait for it to end"):
        client.files.delete(created.input_file_id)
    client.batches.cancel(created.id)
    wait(client, created.id)
    deleted = client.files.delete(created.input_file_id)
    assert (deleted.id, deleted.deleted) == (created.input_file_id, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.input_file_id)


def test_the_routes_need_the_key_when_one_is_set(serve: Any) -> None:
    server = serve(api_key="sk-b")
    with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
        sdk(server, "wrong").batches.list()
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "wrong").files.create(file=("a.jsonl", b"{}"), purpose="batch")
    assert sdk(server, "sk-b").batches.list().data == []


def test_a_batch_dir_outlives_the_server_and_a_temporary_one_does_not(
    serve: Any, tmp_path: Path
) -> None:
    first = serve(batch_dir=str(tmp_path))
    client = sdk(first)
    batch = wait(client, start(client, jsonl([chat_line("a", "kept answer")])).id)
    first.stop()
    client = sdk(serve(batch_dir=str(tmp_path)))
    again = client.batches.retrieve(batch.id)
    assert again.status == "completed" and again.output_file_id == batch.output_file_id
    [line] = lines_of(client, again.output_file_id)
    assert line["response"]["body"]["choices"][0]["message"]["content"] == "kept answer"
    temporary = serve()
    root = temporary.app.state.batch_api.root
    assert root.is_dir()
    temporary.stop()
    assert not root.exists()


def test_a_batch_running_when_the_server_stopped_is_failed_on_restart(
    serve: Any, tmp_path: Path
) -> None:
    first = serve(
        MockEngine("mock-model", latency=0.05), batch_dir=str(tmp_path), batch_concurrency=1
    )
    client = sdk(first)
    created = start(client, jsonl([chat_line(f"r{i}", "x") for i in range(100)]))
    wait(client, created.id, lambda b: b.status == "in_progress")
    first.stop()
    batch = sdk(serve(batch_dir=str(tmp_path))).batches.retrieve(created.id)
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].code == "server_stopped"
    assert "create the batch again" in (batch.errors.data[0].message or "")


def test_uploads_that_are_not_multipart_or_lack_a_field_are_400s(serve: Any) -> None:
    server = serve()

    def post(data: bytes, kind: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{server.url}/files", data=data, method="POST", headers={"Content-Type": kind}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, orjson.loads(reply.read())
        except urllib.error.HTTPError as ex:
            return ex.code, orjson.loads(ex.read())

    status, body = post(b"{}", "application/json")
    assert status == 400 and "takes multipart/form-data" in body["error"]["message"]
    only_purpose = (
        b'--XX\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--XX--\r\n'
    )
    status, body = post(only_purpose, "multipart/form-data; boundary=XX")
    assert status == 400 and body["error"]["param"] == "file"


def test_batch_settings_come_from_flags_and_gauge_serve_variables() -> None:
    env = {"GAUGE_SERVE_BATCH_DIR": "/data/batches", "GAUGE_SERVE_BATCH_CONCURRENCY": "8"}
    settings = load_settings({"batch_max_file_mb": "50"}, env)
    assert settings.batch_dir == "/data/batches" and settings.batch_concurrency == 8
    assert settings.batch_max_file_mb == 50
    assert settings.sources["batch_dir"] == "GAUGE_SERVE_BATCH_DIR"
    with pytest.raises(ConfigError, match="GAUGE_SERVE_BATCH_CONCURRENCY=0 must be greater"):
        load_settings({}, {"GAUGE_SERVE_BATCH_CONCURRENCY": "0"})


def test_a_20000_line_batch_completes(serve: Any) -> None:
    client = sdk(serve())
    lines = [chat_line(f"r{i}", f"w{i} x", max_tokens=1) for i in range(20_000)]
    batch = wait(client, start(client, jsonl(lines)).id, timeout=600)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 20_000
    answers = lines_of(client, batch.output_file_id)
    assert len(answers) == 20_000
    by_id = {
        a["custom_id"]: a["response"]["body"]["choices"][0]["message"]["content"] for a in answers
    }
    assert by_id["r0"] == "w0" and by_id["r19999"] == "w19999"


def test_gauge_eval_with_batch_through_the_server_answers_as_real_time(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from gauge.cli.main import main

    server = serve()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    examples = Path(__file__).resolve().parents[2] / "examples"

    def run(name: str, *extra: str) -> dict[str, Any]:
        log_dir = tmp_path / name
        args = ["eval", str(examples / "arithmetic.py"), "--limit", "12"]
        args += ["--model", "openai/mock-model", "-M", f"base_url={server.url}"]
        try:
            main([*args, "--log-dir", str(log_dir), *extra])
        except SystemExit as ex:
            assert not ex.code, f"gauge eval exited with {ex.code}"
        [journal] = log_dir.glob("*.jsonl")
        records = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
        return {r["id"]: r for r in records if r["type"] == "sample"}

    live = run("live")
    batched = run("batched", "--batch", '{"size": 5, "send_delay": 0.2, "tick": 0.1}')
    capsys.readouterr()
    assert len(live) == len(batched) == 12
    for key, sample in live.items():
        assert batched[key]["output"]["completion"] == sample["output"]["completion"], key
        assert batched[key]["scores"] == sample["scores"], key
    jobs = list(server.app.state.batch_api.batches.records.values())
    assert len(jobs) >= 3 and {job["status"] for job in jobs} == {"completed"}
    assert all(job["request_counts"]["total"] <= 5 for job in jobs)  # the client's job size
    assert sum(job["request_counts"]["completed"] for job in jobs) == 12
