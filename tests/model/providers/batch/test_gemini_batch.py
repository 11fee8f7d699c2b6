"""google (Gemini API) batch mode: the real translator against a fake batch API on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest

from gauge.errors import UnsupportedConfig, UnsupportedFeature
from gauge.model.batch.api import BatchItem, BatchLimits
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.google import GoogleAPI
from gauge.model.providers.google.batch import GeminiBatchAPI, job_status
from gauge.testing.batch_fakes.gemini import FakeGeminiBatches

MakeItem = Callable[..., BatchItem]


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiBatches]:
    async with FakeGeminiBatches(polls=2) as server:
        yield server


async def translator(fake: FakeGeminiBatches) -> tuple[GoogleAPI, GeminiBatchAPI]:
    api = GoogleAPI("gemini-test", base_url=fake.url, api_key="g-test")
    batch = api.batch_api()
    assert isinstance(batch, GeminiBatchAPI)
    return api, batch


@pytest.fixture
async def batch(fake: FakeGeminiBatches) -> AsyncIterator[GeminiBatchAPI]:
    api, batch = await translator(fake)
    yield batch
    await api.close()


async def run_to_end(batch: GeminiBatchAPI, job_id: str, polls: int = 3) -> str:
    states = [(await batch.status(job_id)).state for _ in range(polls)]
    return " ".join(states)


async def test_round_trip_pending_running_then_answers(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    items = [item("a-0", "one"), item("b-0", "two", temperature=0.2), item("c-0", "three")]
    job_id = await batch.submit(items)
    assert job_id == "batches/batch_0001"
    method, path, headers = fake.seen[0]
    assert (method, path) == ("POST", "/v1beta/models/gemini-test:batchGenerateContent")
    assert headers["x-goog-api-key"] == "g-test"
    assert await run_to_end(batch, job_id) == "validating in_progress completed"
    status = await batch.status(job_id)
    assert (status.total, status.completed, status.failed, status.done) == (3, 3, 0, True)
    assert fake.seen[-1][:2] == ("GET", "/v1beta/batches/batch_0001")
    results = await batch.results(job_id)
    assert {k: v.completion for k, v in results.outputs.items()} == {
        "a-0": "echo: one",
        "b-0": "echo: two",
        "c-0": "echo: three",
    }
    usage = results.outputs["c-0"].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (1, 2)
    assert fake.submissions == {"a-0": 1, "b-0": 1, "c-0": 1}


async def test_each_inlined_request_is_the_generate_content_body(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    one = item("a-0", "one", temperature=0.2, max_tokens=9)
    size = batch.size(one)
    await batch.submit([one])
    body = json.loads(fake.bodies[0])
    assert body == {
        "batch": {
            "displayName": "gauge-a-0",
            "model": "models/gemini-test",
            "inputConfig": {
                "requests": {
                    "requests": [
                        {
                            "request": {
                                "contents": [{"role": "user", "parts": [{"text": "one"}]}],
                                "generationConfig": {"temperature": 0.2, "maxOutputTokens": 9},
                            },
                            "metadata": {"key": "a-0"},
                        }
                    ]
                }
            },
        }
    }
    envelope = b'{"batch":{"displayName":"gauge-a-0","model":"models/gemini-test",'
    envelope += b'"inputConfig":{"requests":{"requests":[]}}}}'
    assert len(fake.bodies[0]) == len(envelope) + size - 1


async def test_inlined_errors_carry_googles_retry_classification(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    fake.rate_limited, fake.bad_requests = {"b-0"}, {"c-0"}
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two"), item("c-0", "three")])
    await run_to_end(batch, job_id)
    status = await batch.status(job_id)
    assert (status.completed, status.failed) == (1, 2)
    results = await batch.results(job_id)
    assert list(results.outputs) == ["a-0"]
    limited, bad = results.errors["b-0"], results.errors["c-0"]
    assert (limited.status, limited.retryable) == (429, True)
    assert limited.message == "RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota)."
    assert (bad.status, bad.retryable) == (400, False)


async def test_responses_without_keys_are_placed_by_request_order(
    fake: FakeGeminiBatches, item: MakeItem
) -> None:
    fake.keys = False
    fake.bad_requests = {"b-0"}
    api, batch = await translator(fake)
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two"), item("c-0", "three")])
    await run_to_end(batch, job_id)
    results = await batch.results(job_id)
    assert results.outputs["c-0"].completion == "echo: three"
    assert results.errors["b-0"].retryable is False
    # A new translator (a resumed run) reads the order back from the batch's inputConfig.
    fresh_api, fresh = await translator(fake)
    again = await fresh.results(job_id)
    await fresh_api.close()
    assert {k: v.completion for k, v in again.outputs.items()} == {
        "a-0": "echo: one",
        "c-0": "echo: three",
    }
    await api.close()


async def test_expired_job_without_keys_leaves_everything_unanswered(
    fake: FakeGeminiBatches, item: MakeItem
) -> None:
    fake.keys, fake.end = False, "expired"
    api, batch = await translator(fake)
    job_id = await batch.submit([item(f"r-{i}", f"q{i}") for i in range(4)])
    assert await run_to_end(batch, job_id) == "validating in_progress expired"
    results = await batch.results(job_id)
    assert (results.outputs, results.errors) == ({}, {})
    await api.close()


async def test_expired_job_with_keys_returns_the_answered_part(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    fake.end = "expired"
    job_id = await batch.submit([item(f"r-{i}", f"q{i}") for i in range(4)])
    await run_to_end(batch, job_id)
    results = await batch.results(job_id)
    assert sorted(results.outputs) == ["r-0", "r-1"]


async def test_failed_job_carries_the_operation_error(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    fake.end = "failed"
    job_id = await batch.submit([item("a-0", "one")])
    await run_to_end(batch, job_id, polls=2)
    status = await batch.status(job_id)
    assert (status.state, status.message) == ("failed", "the batch could not be processed")
    results = await batch.results(job_id)
    assert (results.outputs, results.errors) == ({}, {})


async def test_cancel_posts_to_the_operation_and_ends_cancelled(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    fake.answered = 1
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two")])
    await batch.cancel(job_id)
    assert fake.seen[-1][:2] == ("POST", "/v1beta/batches/batch_0001:cancel")
    assert await run_to_end(batch, job_id, polls=2) == "in_progress cancelled"
    assert list((await batch.results(job_id)).outputs) == ["a-0"]


async def test_unknown_job_is_googles_404(batch: GeminiBatchAPI) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        await batch.status("batches/nope")
    assert (caught.value.status, caught.value.message) == (404, "batches/nope not found")


def test_limits_are_the_documented_20_mb_of_inlined_requests() -> None:
    assert GeminiBatchAPI.limits == BatchLimits(max_requests=50_000, max_bytes=20_000_000)


async def test_a_request_larger_than_a_whole_job_is_a_one_line_error(
    fake: FakeGeminiBatches, batch: GeminiBatchAPI, item: MakeItem
) -> None:
    with pytest.raises(UnsupportedConfig) as caught:
        await batch.submit([item("a-0", "x" * 21_000_000)])
    assert str(caught.value) == (
        "a request of 21.0 MB is over google's batch limit of 20.0 MB per job; send it "
        "without batch (batch=False) or make it smaller"
    )
    assert fake.jobs == {}


def test_vertex_ai_has_no_inlined_batch_and_says_what_to_use() -> None:
    api = GoogleAPI("gemini-test", project="p", location="us-central1")
    with pytest.raises(UnsupportedFeature) as caught:
        api.batch_api()
    assert str(caught.value) == (
        "google batch works with the Gemini API (GOOGLE_API_KEY or GEMINI_API_KEY), not "
        "Vertex AI, whose batch prediction reads and writes Cloud Storage or BigQuery; use a "
        "Gemini API key for batch, or remove batch (--batch) for this model"
    )


@pytest.mark.parametrize(
    ("state", "mapped"),
    [
        ("BATCH_STATE_PENDING", "validating"),
        ("BATCH_STATE_RUNNING", "in_progress"),
        ("BATCH_STATE_SUCCEEDED", "completed"),
        ("BATCH_STATE_FAILED", "failed"),
        ("BATCH_STATE_CANCELLED", "cancelled"),
        ("BATCH_STATE_EXPIRED", "expired"),
        ("JOB_STATE_SUCCEEDED", "completed"),
        ("JOB_STATE_CANCELLING", "cancelling"),
        ("BATCH_STATE_SOMETHING_NEW", "failed"),
    ],
)
def test_batch_states_map_onto_openai_words(state: str, mapped: str) -> None:
    assert job_status({"metadata": {"state": state}}).state == mapped
