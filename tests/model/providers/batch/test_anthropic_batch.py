"""anthropic Message Batches: the real translator against a fake batches API on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest

from gauge.errors import UnsupportedConfig
from gauge.model.batch.api import BatchItem, BatchLimits
from gauge.model.providers._http import HTTPConnectionError, HTTPStatusError
from gauge.model.providers.anthropic import AnthropicAPI
from gauge.model.providers.anthropic.batch import AnthropicBatchAPI, job_status
from gauge.testing.batch_fakes.anthropic import FakeAnthropicBatches

MakeItem = Callable[..., BatchItem]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropicBatches]:
    async with FakeAnthropicBatches(polls=2) as server:
        yield server


@pytest.fixture
async def batch(fake: FakeAnthropicBatches) -> AsyncIterator[AnthropicBatchAPI]:
    api = AnthropicAPI("claude-test", base_url=fake.url, api_key="sk-ant-test")
    translator = api.batch_api()
    assert isinstance(translator, AnthropicBatchAPI)
    yield translator
    await translator.close()
    await api.close()


async def test_round_trip_polls_then_answers_every_request(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    items = [item("a-0", "one"), item("b-0", "two", temperature=0.5), item("c-0", "three")]
    job_id = await batch.submit(items)
    assert job_id == "msgbatch_0001"
    method, path, headers = fake.seen[0]
    assert (method, path) == ("POST", "/v1/messages/batches")
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    first = await batch.status(job_id)
    assert (first.state, first.total, first.done) == ("in_progress", 3, False)
    assert (await batch.status(job_id)).state == "in_progress"
    last = await batch.status(job_id)
    assert (last.state, last.total, last.completed, last.failed) == ("completed", 3, 3, 0)
    results = await batch.results(job_id)
    assert {k: v.completion for k, v in results.outputs.items()} == {
        "a-0": "echo: one",
        "b-0": "echo: two",
        "c-0": "echo: three",
    }
    usage = results.outputs["a-0"].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (1, 2)
    assert results.errors == {}
    assert fake.submissions == {"a-0": 1, "b-0": 1, "c-0": 1}


async def test_params_are_the_messages_body_of_each_request(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    one = item("a-0", "one", temperature=0.5, max_tokens=7)
    size = batch.size(one)
    await batch.submit([one])
    assert json.loads(fake.bodies[0]) == {
        "requests": [
            {
                "custom_id": "a-0",
                "params": {
                    "model": "claude-test",
                    "max_tokens": 7,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "one"}]}],
                    "temperature": 0.5,
                },
            }
        ]
    }
    # size() is the exact bytes the request adds to a job (its entry and a comma).
    assert len(fake.bodies[0]) == len('{"requests":[]}') + size - 1


async def test_errored_lines_carry_the_providers_retry_classification(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    fake.rate_limited = {"b-0"}
    fake.bad_requests = {"c-0"}
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two"), item("c-0", "three")])
    for _ in range(3):
        status = await batch.status(job_id)
    assert (status.state, status.completed, status.failed) == ("completed", 1, 2)
    results = await batch.results(job_id)
    assert list(results.outputs) == ["a-0"]
    limited, bad = results.errors["b-0"], results.errors["c-0"]
    assert (limited.status, limited.retryable) == (429, True)
    assert limited.message.startswith("rate_limit_error: ")
    assert (bad.status, bad.retryable) == (400, False)
    assert bad.message == "invalid_request_error: max_tokens: Field required"


async def test_expired_job_returns_the_answered_part_and_leaves_the_rest(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    fake.end = "expired"
    job_id = await batch.submit([item(f"r-{i}", f"q{i}") for i in range(4)])
    for _ in range(3):
        status = await batch.status(job_id)
    assert (status.state, status.done, status.completed) == ("expired", True, 2)
    assert status.message == "2 requests expired before they ran (24-hour window)"
    results = await batch.results(job_id)
    assert sorted(results.outputs) == ["r-0", "r-1"]
    assert results.errors == {}


async def test_cancel_goes_through_cancelling_to_cancelled_with_partial_results(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    fake.answered = 1
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two")])
    await batch.cancel(job_id)
    assert fake.seen[-1][:2] == ("POST", f"/v1/messages/batches/{job_id}/cancel")
    assert (await batch.status(job_id)).state == "cancelling"
    status = await batch.status(job_id)
    assert (status.state, status.done) == ("cancelled", True)
    results = await batch.results(job_id)
    assert list(results.outputs) == ["a-0"]
    assert results.errors == {}


async def test_results_of_a_job_still_running_are_empty(
    batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    job_id = await batch.submit([item("a-0", "one")])
    results = await batch.results(job_id)
    assert (results.outputs, results.errors) == ({}, {})


async def test_unknown_job_is_the_providers_404(batch: AnthropicBatchAPI) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        await batch.status("msgbatch_nope")
    assert caught.value.status == 404
    assert caught.value.message == "batch msgbatch_nope not found"


def test_limits_are_anthropics_documented_numbers() -> None:
    assert AnthropicBatchAPI.limits == BatchLimits(max_requests=100_000, max_bytes=256_000_000)


async def test_a_request_larger_than_a_whole_job_is_a_one_line_error(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    batch.limits = BatchLimits(max_requests=10, max_bytes=2_000_000)
    with pytest.raises(UnsupportedConfig) as caught:
        await batch.submit([item("a-0", "x" * 2_500_000)])
    assert str(caught.value) == (
        "a request of 2.5 MB is over anthropic's batch limit of 2.0 MB per job; send it "
        "without batch (batch=False) or make it smaller"
    )
    assert fake.jobs == {}


async def test_extra_headers_go_with_the_job_and_must_agree(
    fake: FakeAnthropicBatches, batch: AnthropicBatchAPI, item: MakeItem
) -> None:
    beta = {"anthropic-beta": "output-128k-2025-02-19"}
    await batch.submit(
        [item("a-0", "one", extra_headers=beta), item("b-0", "two", extra_headers=beta)]
    )
    assert fake.seen[-1][2]["anthropic-beta"] == "output-128k-2025-02-19"
    with pytest.raises(UnsupportedConfig, match="different extra_headers"):
        await batch.submit([item("c-0", "one", extra_headers=beta), item("d-0", "two")])
    assert len(fake.jobs) == 1


@pytest.mark.parametrize(
    ("batch_object", "state"),
    [
        ({"processing_status": "in_progress"}, "in_progress"),
        ({"processing_status": "canceling"}, "cancelling"),
        ({"processing_status": "ended", "request_counts": {"succeeded": 2}}, "completed"),
        ({"processing_status": "ended", "request_counts": {"errored": 2}}, "completed"),
        ({"processing_status": "ended", "request_counts": {"expired": 1}}, "expired"),
        (
            {"processing_status": "ended", "cancel_initiated_at": "2026-12-06T08:30:00Z"},
            "cancelled",
        ),
        ({"processing_status": "paused"}, "failed"),
    ],
)
def test_processing_status_maps_onto_openai_words(
    batch_object: dict[str, object], state: str
) -> None:
    assert job_status(batch_object).state == state


async def test_a_refused_create_is_the_providers_status_and_message(
    fake: FakeAnthropicBatches, item: MakeItem
) -> None:
    api = AnthropicAPI("claude-test", base_url=fake.url, api_key="sk-ant-wrong")
    with pytest.raises(HTTPStatusError) as caught:
        await AnthropicBatchAPI(api).submit([item("a-0", "one")])
    await api.close()
    assert (caught.value.status, caught.value.message) == (401, "invalid x-api-key")
    assert api.classify_error(caught.value).kind == "fatal"
    assert fake.jobs == {}


async def test_no_server_is_a_retryable_connection_error(item: MakeItem) -> None:
    async with FakeAnthropicBatches() as gone:
        url = gone.url
    api = AnthropicAPI("claude-test", base_url=url, api_key="sk-ant-test")
    with pytest.raises(HTTPConnectionError) as caught:
        await AnthropicBatchAPI(api).submit([item("a-0", "one")])
    await api.close()
    assert api.classify_error(caught.value).retryable
