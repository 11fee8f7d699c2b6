"""OpenAIBatchAPI against the fake files + batches server on 127.0.0.1: the wire format,
finished, failed, expired and cancelled jobs, item errors, and Azure's paths."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from gauge.errors import UnsupportedConfig
from gauge.model.batch.api import BatchItem, BatchLimits, BatchResults, ItemError
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessageUser
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.openai_compat.batch import AzureOpenAIBatchAPI, OpenAIBatchAPI
from gauge.model.providers.openai_compat.services import OpenAIAPI
from gauge.model.request import ModelRequest
from gauge.testing.openai_batch_server import OpenAIBatchServer


@pytest.fixture
async def server() -> AsyncIterator[OpenAIBatchServer]:
    async with OpenAIBatchServer() as running:
        yield running


@pytest.fixture
async def batch(server: OpenAIBatchServer) -> AsyncIterator[OpenAIBatchAPI]:
    chat = OpenAIAPI("gpt-4o-mini", base_url=server.url, api_key="sk-test")
    api = chat.batch_api()
    assert isinstance(api, OpenAIBatchAPI)
    yield api
    await chat.close()


def item(text: str, custom_id: str, **config: object) -> BatchItem:
    request = ModelRequest([ChatMessageUser(content=text)], [], "auto", GenerateConfig(**config))
    return BatchItem(custom_id, request)


async def finish(api: OpenAIBatchAPI, job_id: str) -> BatchResults:
    for _ in range(10):
        if (await api.status(job_id)).done:
            return await api.results(job_id)
    raise AssertionError("the job never finished")


async def test_a_job_round_trip(server: OpenAIBatchServer, batch: OpenAIBatchAPI) -> None:
    items = [item("hello there", "a-0", max_tokens=5), item("second one", "b-0")]
    sizes = [batch.size(i) for i in items]
    job_id = await batch.submit(items)
    uploaded = server.files["file-1"]
    lines = [orjson.loads(raw) for raw in uploaded.splitlines()]
    assert sizes == [len(raw) + 1 for raw in uploaded.splitlines()]
    assert lines[0] == {
        "custom_id": "a-0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 5,
        },
    }
    job = server.jobs[job_id]
    assert (job.endpoint, job.status) == ("/v1/chat/completions", "validating")
    results = await finish(batch, job_id)
    assert results.outputs["a-0"].completion == "hello there"
    assert results.outputs["b-0"].usage is not None
    assert results.outputs["b-0"].usage.output_tokens == 2
    assert results.errors == {}
    assert server.stats()["submissions"] == {"a-0": 1, "b-0": 1}


async def test_status_counts_and_in_progress(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    server.polls = 1
    job_id = await batch.submit([item("x", "x-0")])
    first = await batch.status(job_id)
    assert (first.state, first.total, first.done) == ("in_progress", 1, False)
    second = await batch.status(job_id)
    assert (second.state, second.completed, second.done) == ("completed", 1, True)


async def test_item_errors_are_classified(server: OpenAIBatchServer, batch: OpenAIBatchAPI) -> None:
    server.fail("slow down", 429)
    server.fail("bad", 400)
    server.fail("broken", 500, file="output")
    items = [item("slow down", "s-0"), item("bad", "b-0"), item("broken", "x-0"), item("ok", "o-0")]
    results = await finish(batch, await batch.submit(items))
    assert results.errors == {
        "s-0": ItemError("injected 429", 429, retryable=True),
        "b-0": ItemError("injected 400", 400, retryable=False),
        "x-0": ItemError("injected 500", 500, retryable=True),
    }
    assert list(results.outputs) == ["o-0"]


@pytest.mark.parametrize("state", ["expired", "cancelled"])
async def test_unanswered_lines_are_left_out(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI, state: str
) -> None:
    server.end_next(state, answered=1)
    job_id = await batch.submit([item("one", "1-0"), item("two", "2-0")])
    status = await batch.status(job_id)
    assert status.state == state
    results = await batch.results(job_id)
    assert list(results.outputs) == ["1-0"] and results.errors == {}


async def test_failed_job_says_why(server: OpenAIBatchServer, batch: OpenAIBatchAPI) -> None:
    server.end_next("failed")
    status = await batch.status(await batch.submit([item("one", "1-0")]))
    assert (status.state, status.message) == ("failed", "the job failed (injected)")


async def test_duplicate_ids_fail_validation(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    status = await batch.status(await batch.submit([item("a", "same"), item("b", "same")]))
    assert status.state == "failed"
    assert status.message == "duplicate or missing custom_id 'same'"


async def test_cancel(server: OpenAIBatchServer, batch: OpenAIBatchAPI) -> None:
    server.polls = 5
    job_id = await batch.submit([item("a", "a-0")])
    await batch.cancel(job_id)
    assert server.jobs[job_id].status == "cancelling"
    assert (await batch.status(job_id)).state == "cancelled"
    assert (await batch.results(job_id)).outputs == {}


async def test_http_errors_are_the_provider_errors(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    server.fail_http("files", 429)
    with pytest.raises(HTTPStatusError) as caught:
        await batch.submit([item("a", "a-0")])
    assert caught.value.status == 429
    assert batch.chat.classify_error(caught.value).kind == "rate_limit"
    server.fail_http("poll", 503)
    job_id = await batch.submit([item("a", "a-0")])
    with pytest.raises(HTTPStatusError, match="HTTP 503"):
        await batch.status(job_id)


async def test_azure_paths_api_version_and_deployment(server: OpenAIBatchServer) -> None:
    chat = OpenAIAPI(
        "my-batch-deployment",
        base_url=f"http://127.0.0.1:{server.port}",
        api_key="az-key",
        azure=True,
        api_version="2025-01-01",
    )
    batch = chat.batch_api()
    assert isinstance(batch, AzureOpenAIBatchAPI) and batch.provider == "azure openai"
    try:
        job_id = await batch.submit([item("hi azure", "z-0")])
        line = orjson.loads(server.files["file-1"])
        assert (line["url"], line["body"]["model"]) == ("/chat/completions", "my-batch-deployment")
        assert server.jobs[job_id].endpoint == "/chat/completions"
        results = await finish(batch, job_id)
        assert results.outputs["z-0"].completion == "hi azure"
        paths = [(method, path) for method, path, _ in server.seen]
        assert paths == [
            ("POST", "/openai/files"),
            ("POST", "/openai/batches"),
            ("GET", f"/openai/batches/{job_id}"),
            ("GET", f"/openai/batches/{job_id}"),
            ("GET", "/openai/files/file-2/content"),
        ]
        assert all(query == {"api-version": "2025-01-01"} for _, _, query in server.seen)
    finally:
        await chat.close()


def test_subclasses_change_paths_by_class_attributes() -> None:
    class TogetherLike(OpenAIBatchAPI):
        purpose = "batch-api"

    chat = OpenAIAPI("m", base_url="http://127.0.0.1:9/v1", api_key="k")
    api = TogetherLike(chat)
    assert (api.files_path, api.batches_path, api.purpose) == ("files", "batches", "batch-api")


async def test_states_are_read_case_blind(server: OpenAIBatchServer, batch: OpenAIBatchAPI) -> None:
    job_id = await batch.submit([item("a", "a-0")])
    server.jobs[job_id].status = "IN_PROGRESS"  # how some services spell them
    server.jobs[job_id].polls_left = 3
    assert (await batch.status(job_id)).state == "in_progress"


async def test_a_delayed_job_stays_in_progress(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    server.delay = 0.2
    job_id = await batch.submit([item("a", "a-0")])
    assert (await batch.status(job_id)).state == "in_progress"
    await asyncio.sleep(0.25)
    assert (await batch.status(job_id)).state == "completed"


async def test_an_unknown_state_fails_the_job_naming_it(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    job_id = await batch.submit([item("a", "a-0")])
    server.jobs[job_id].status = "paused_for_maintenance"
    status = await batch.status(job_id)
    assert (status.state, status.message) == (
        "failed",
        "unknown batch state 'paused_for_maintenance'",
    )


async def test_a_request_over_the_job_bytes_is_refused_before_upload(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    batch.limits = BatchLimits(max_requests=10, max_bytes=1_000_000)
    with pytest.raises(UnsupportedConfig, match=r"^a request of 1\.0 MB is over openai's batch"):
        batch.size(item("x" * 1_000_000, "big-0"))
    assert server.files == {}


async def test_extra_headers_go_with_the_job(
    server: OpenAIBatchServer, batch: OpenAIBatchAPI
) -> None:
    same = {"X-Team": "evals"}
    await batch.submit([item("a", "a-0", extra_headers=same), item("b", "b-0", extra_headers=same)])
    assert [path for _, path, _ in server.seen] == ["/v1/files", "/v1/batches"]
    assert [h.get("x-team") for h in server.headers] == ["evals", "evals"]
    assert server.headers[0]["authorization"] == "Bearer sk-test"
    with pytest.raises(
        UnsupportedConfig, match="requests in one job carry different extra_headers"
    ):
        await batch.submit([item("a", "a-1", extra_headers=same), item("b", "b-1")])
