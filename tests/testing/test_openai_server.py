"""The mock OpenAI-compatible server: spec-shaped answers, faults, validation, process mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from gauge.testing import OpenAIServer, validate_request
from gauge.testing.faults import read_log

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hello big world"}]}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    session: aiohttp.ClientSession, url: str, body: object
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(url, data=orjson.dumps(body)) as response:
        return response.status, dict(response.headers), await response.read()


async def test_chat_reply_is_spec_shaped_and_recorded(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(validate=True) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    body = orjson.loads(raw)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hello big world",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 3
    assert body["usage"]["completion_tokens"] == 3
    assert server.count == 1
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].body == CHAT
    assert server.validation_errors == []


async def test_n_max_tokens_stop_and_logprobs(http: aiohttp.ClientSession) -> None:
    body = {**CHAT, "n": 2, "max_tokens": 2, "logprobs": True, "top_logprobs": 3}
    async with OpenAIServer(validate=True) as server:
        _, _, raw = await post(http, f"{server.url}/chat/completions", body)
        _, _, raw_stop = await post(
            http, f"{server.url}/chat/completions", {**CHAT, "stop": [" big"]}
        )
    data = orjson.loads(raw)
    assert [c["message"]["content"] for c in data["choices"]] == ["hello big", "hello big"]
    assert data["choices"][1]["finish_reason"] == "length"
    tokens = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == ["hello", " big"]
    assert len(tokens[1]["top_logprobs"]) == 3
    assert orjson.loads(raw_stop)["choices"][0]["message"]["content"] == "hello"


async def test_tool_choice_required_returns_a_tool_call(http: aiohttp.ClientSession) -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    body = {**CHAT, "tools": [tool], "tool_choice": "required"}
    async with OpenAIServer(validate=True) as server:
        _, _, raw = await post(http, f"{server.url}/chat/completions", body)
    choice = orjson.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "add", "arguments": "{}"}


async def test_streaming_sends_chunks_usage_and_done(http: aiohttp.ClientSession) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with OpenAIServer(validate=True) as server:
        url = f"{server.url}/chat/completions"
        async with http.post(url, data=orjson.dumps(body)) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            text = (await response.read()).decode()
    events = [e.removeprefix("data: ") for e in text.strip().split("\n\n")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    deltas = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert deltas == "hello big world"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 6
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_completions_and_models_endpoints(http: aiohttp.ClientSession) -> None:
    body = {"model": "mock-model", "prompt": "one two three", "logprobs": 2, "max_tokens": 2}
    async with OpenAIServer(validate=True) as server:
        _, _, raw = await post(http, f"{server.url}/completions", body)
        async with http.get(f"{server.url}/models") as response:
            models = await response.json()
        async with http.get(f"{server.url}/models/org/some-model") as response:
            one = await response.json()
    data = orjson.loads(raw)
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "one two"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["logprobs"]["tokens"] == ["one", " two"]
    assert data["choices"][0]["logprobs"]["top_logprobs"][0] == {"one": -0.1, "one#1": -0.2}
    assert models["object"] == "list" and models["data"][0]["id"] == "mock-model"
    assert one["id"] == "org/some-model"


async def test_validation_rejects_bodies_outside_the_spec(http: aiohttp.ClientSession) -> None:
    bad = {"model": "mock-model", "messages": [{"role": "user", "content": "x"}], "n": "two"}
    async with OpenAIServer(validate=True) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", bad)
    assert status == 400
    assert "n" in orjson.loads(raw)["error"]["message"]
    assert len(server.validation_errors) == 1


def test_validate_request_accepts_nullable_fields_and_rejects_bad_roles() -> None:
    ok = {**CHAT, "temperature": None, "stop": None}
    assert validate_request("/v1/chat/completions", ok) is None
    bad = {"model": "m", "messages": [{"role": "robot", "content": "x"}]}
    assert validate_request("/v1/chat/completions", bad) is not None
    assert validate_request("/v1/completions", {"model": "m", "prompt": [1, 2]}) is None


async def test_rate_limit_answers_429_with_wait_headers(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(rate_limit=2, retry_after=0.25) as server:
        statuses = [
            (await post(http, f"{server.url}/chat/completions", CHAT))[:2] for _ in range(3)
        ]
    assert [s for s, _ in statuses] == [200, 200, 429]
    headers = statuses[2][1]
    assert headers["Retry-After"] == "0.25"
    assert headers["retry-after-ms"] == "250"
    assert headers["x-ratelimit-reset-requests"] == "0.25s"


async def test_tokens_per_minute_limit(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(tokens_per_minute=10) as server:
        first = await post(http, f"{server.url}/chat/completions", CHAT)
        second = await post(http, f"{server.url}/chat/completions", CHAT)
    assert first[0] == 200
    assert second[0] == 429
    assert "tokens per minute" in orjson.loads(second[2])["error"]["message"]


async def test_error_and_malformed_rates(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(error_rate=1.0) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    assert status == 500 and orjson.loads(raw)["error"]["type"] == "server_error"
    async with OpenAIServer(malformed_rate=1.0) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_hang_rate_never_answers_until_stopped(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(hang_rate=1.0) as server:
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.3):
                await post(http, f"{server.url}/chat/completions", CHAT)
        assert server.count == 1


async def test_latency_delays_answers(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(latency=0.2) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await post(http, f"{server.url}/chat/completions", CHAT)
        assert loop.time() - started >= 0.2


async def test_scripted_responses_come_first(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer() as server:
        server.script(status=503, json={"error": {"message": "busy"}}, headers={"X-Test": "1"})
        server.script(raw=b"not json")
        first = await post(http, f"{server.url}/chat/completions", CHAT)
        second = await post(http, f"{server.url}/chat/completions", CHAT)
        third = await post(http, f"{server.url}/chat/completions", CHAT)
    assert first[0] == 503 and first[1]["X-Test"] == "1"
    assert second[2] == b"not json"
    assert third[0] == 200


def test_rates_outside_0_1_are_rejected() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        OpenAIServer(error_rate=1.5)


async def test_process_mode_serves_on_announced_port(http: aiohttp.ClientSession) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gauge.testing.openai_server", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        for _ in range(4):
            status, _, raw = await post(http, f"{url}/chat/completions", CHAT)
            assert status == 200
            assert orjson.loads(raw)["choices"][0]["message"]["content"] == "hello big world"
    finally:
        process.terminate()
        exit_code = await asyncio.to_thread(process.wait, 10)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0


# -- injected faults (gauge.testing.faults) -----------------------------------------------


async def test_reset_closes_the_connection_without_an_answer(
    http: aiohttp.ClientSession,
) -> None:
    async with OpenAIServer(reset_rate=1.0) as server:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(http, f"{server.url}/chat/completions", CHAT)
        async with http.get(f"{server.url}/models/x") as response:  # still serving
            assert response.status == 200
    assert server.faults.counts == {"reset": 1}
    assert server.requests[0].fault == "reset"


async def test_truncated_stream_stops_before_done_and_breaks_the_body(
    http: aiohttp.ClientSession,
) -> None:
    body = {**CHAT, "stream": True}
    async with OpenAIServer(truncate_rate=1.0, seed=1) as server:
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.post(f"{server.url}/chat/completions", data=orjson.dumps(body)) as r:
                async for chunk in r.content.iter_any():
                    received += chunk
    events = [e for e in received.decode().split("\n\n") if e]
    assert events and all(e.startswith("data: {") for e in events)  # chunks, no [DONE]
    finishes = [orjson.loads(e[6:])["choices"][0]["finish_reason"] for e in events]
    assert finishes == [None] * len(events)  # cut before the finish_reason
    assert server.faults.counts == {"truncate": 1}


async def test_truncation_applies_to_streams_only(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(truncate_rate=1.0) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    assert status == 200 and orjson.loads(raw)["choices"][0]["message"]["content"]
    assert server.faults.counts == {}


async def test_trickle_spaces_chunks_and_body_pieces(http: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    body = {**CHAT, "stream": True}
    async with OpenAIServer(trickle_rate=1.0, trickle_delay=0.1) as server:
        started = loop.time()
        async with http.post(f"{server.url}/chat/completions", data=orjson.dumps(body)) as r:
            text = (await r.read()).decode()
        streamed = loop.time() - started
        started = loop.time()
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
        plain = loop.time() - started
    assert text.rstrip().endswith("data: [DONE]")  # complete, only slow
    chunks = text.count("data: {")
    assert chunks == 5  # role, 3 words, finish (no usage: not asked for)
    assert streamed >= 0.1 * (chunks - 1)
    assert status == 200 and orjson.loads(raw)["choices"][0]["message"]["content"]
    assert plain >= 0.3  # four pieces, three gaps
    assert server.faults.counts == {"trickle": 2}


async def test_storm_answers_429_for_its_length_with_or_without_wait_headers(
    http: aiohttp.ClientSession,
) -> None:
    for with_wait in (True, False):
        async with OpenAIServer(storm_rate=1.0, storm_seconds=5, storm_retry_after=with_wait) as s:
            first = await post(http, f"{s.url}/chat/completions", CHAT)
            second = await post(http, f"{s.url}/chat/completions", CHAT)
        assert first[0] == second[0] == 429
        headers = second[1]
        assert ("Retry-After" in headers) is with_wait
        assert not any(h.lower().startswith("x-ratelimit-reset") for h in headers)
        if with_wait:
            assert 4 < float(headers["Retry-After"]) <= 5
            assert 4000 < int(headers["retry-after-ms"]) <= 5000
        assert orjson.loads(second[2])["error"]["code"] == "rate_limit_exceeded"
        assert s.faults.counts == {"storm": 2}


async def test_fault_draws_depend_on_the_body_not_the_arrival_order(
    http: aiohttp.ClientSession,
) -> None:
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(30)]

    async def outcomes(order: list[int]) -> dict[int, list[int]]:
        got: dict[int, list[int]] = {}
        async with OpenAIServer(error_rate=0.5, seed=9) as server:
            for i in order:
                for _ in range(2):  # each body twice: the second draw differs from the first
                    status, _, _ = await post(http, f"{server.url}/chat/completions", bodies[i])
                    got.setdefault(i, []).append(status)
        return got

    forward = await outcomes(list(range(30)))
    backward = await outcomes(list(reversed(range(30))))
    assert forward == backward
    statuses = [s for pair in forward.values() for s in pair]
    assert 200 in statuses and 500 in statuses
    assert any(pair[0] != pair[1] for pair in forward.values())


async def test_request_log_and_stats_name_each_fault(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    log = tmp_path / "requests.jsonl"
    async with OpenAIServer(error_rate=1.0, request_log=str(log)) as server:
        await post(http, f"{server.url}/chat/completions", CHAT)
        server.error_rate = 0.0  # the rates stay settable on the server
        await post(http, f"{server.url}/chat/completions", {**CHAT, "user": "u1"})
        server.script(status=503, json={"error": {"message": "busy"}})
        await post(http, f"{server.url}/chat/completions", CHAT)
        await post(http, f"{server.url}/chat/completions", {"messages": []})  # no model
        async with http.get(f"{server.url.removesuffix('/v1')}/stats") as response:
            stats = await response.json()
    lines = read_log(log)
    assert [line["fault"] for line in lines] == ["error", None, "scripted", "invalid"]
    assert [r.fault for r in server.requests] == ["error", None, "scripted", "invalid"]
    assert lines[1]["body"]["user"] == "u1" and lines[0]["path"] == "/v1/chat/completions"
    assert "content-type" in lines[0]["headers"]
    assert stats == {"requests": 4, "rejected": 0, "faults": {"error": 1}}


def test_fault_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"reset_rate must be within 0\.\.1"):
        OpenAIServer(reset_rate=2)
    with pytest.raises(ValueError, match="trickle_delay must be >= 0"):
        OpenAIServer(trickle_delay=-1)


def test_process_mode_rejects_a_bad_rate_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gauge.testing.openai_server", "--truncate-rate", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("error: truncate_rate must be within 0..1, got 3.0")


async def test_process_mode_injects_faults_and_logs_requests(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gauge.testing.openai_server",
            "--reset-rate",
            "1",
            "--request-log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.to_thread(process.stdout.readline)).split()[-1]
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(http, f"{url}/chat/completions", CHAT)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)
        if process.stdout is not None:
            process.stdout.close()
    [line] = read_log(log)
    assert line["fault"] == "reset" and line["body"] == CHAT


def test_process_mode_runs_on_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    code = (
        "import asyncio\n"
        "from gauge.testing.openai_server import use_fast_loop\n"
        "print(use_fast_loop(), type(asyncio.new_event_loop()).__module__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.split() == ["True", "uvloop"]


async def test_process_mode_keeps_latency_and_rate_limit(http: aiohttp.ClientSession) -> None:
    # The process mode's loop (uvloop when installed) emulates the same server.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gauge.testing.openai_server",
            "--latency",
            "0.3",
            "--rate-limit",
            "1",
            "--retry-after",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.to_thread(process.stdout.readline)).split()[-1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _, raw = await post(http, f"{url}/chat/completions", CHAT)
        assert status == 200 and loop.time() - started >= 0.3
        assert orjson.loads(raw)["choices"][0]["message"]["content"] == "hello big world"
        status, headers, raw = await post(http, f"{url}/chat/completions", CHAT)
        assert status == 429 and headers["Retry-After"] == "2"
        assert orjson.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    finally:
        process.terminate()
        exit_code = await asyncio.to_thread(process.wait, 10)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0
