"""mistral batch jobs: the real translator against a fake Files + batch API on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest

from gauge.errors import UnsupportedConfig, UnsupportedFeature
from gauge.model.batch.api import BatchItem, BatchLimits
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.mistral import MistralAPI
from gauge.model.providers.mistral.batch import MistralBatchAPI, job_status
from gauge.testing.batch_fakes.mistral import FakeMistralBatches

MakeItem = Callable[..., BatchItem]


@pytest.fixture
async def fake() -> AsyncIterator[FakeMistralBatches]:
    async with FakeMistralBatches(polls=2) as server:
        yield server


@pytest.fixture
async def batch(fake: FakeMistralBatches) -> AsyncIterator[MistralBatchAPI]:
    api = MistralAPI("mistral-test", base_url=f"{fake.url}/v1", api_key="m-test")
    translator = api.batch_api()
    assert isinstance(translator, MistralBatchAPI)
    yield translator
    await api.close()


async def states(batch: MistralBatchAPI, job_id: str, polls: int = 3) -> str:
    return " ".join([(await batch.status(job_id)).state for _ in range(polls)])


async def test_round_trip_uploads_a_file_then_runs_a_job(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    items = [item("a-0", "one"), item("b-0", "two", temperature=0.3), item("c-0", "three")]
    job_id = await batch.submit(items)
    assert job_id == "job-0001"
    assert [s[:2] for s in fake.seen] == [("POST", "/v1/files"), ("POST", "/v1/batch/jobs")]
    assert fake.seen[0][2]["authorization"] == "Bearer m-test"
    assert fake.seen[0][2]["content-type"].startswith("multipart/form-data; boundary=")
    assert json.loads(fake.bodies[1]) == {
        "input_files": ["file-0001"],
        "model": "mistral-test",
        "endpoint": "/v1/chat/completions",
        "metadata": {"source": "gauge"},
    }
    assert await states(batch, job_id) == "validating in_progress completed"
    status = await batch.status(job_id)
    assert (status.total, status.completed, status.failed) == (3, 3, 0)
    results = await batch.results(job_id)
    assert {k: v.completion for k, v in results.outputs.items()} == {
        "a-0": "echo: one",
        "b-0": "echo: two",
        "c-0": "echo: three",
    }
    usage = results.outputs["b-0"].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (1, 2)
    assert fake.seen[-1][:2] == ("GET", "/v1/files/file-job-0001-output/content")
    assert fake.submissions == {"a-0": 1, "b-0": 1, "c-0": 1}


async def test_the_uploaded_file_holds_one_chat_body_a_line(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    one, two = item("a-0", "one", temperature=0.3), item("b-0", "two", max_tokens=5)
    sizes = batch.size(one) + batch.size(two)
    await batch.submit([one, two])
    content = fake.files["file-0001"]
    assert len(content) == sizes
    assert [json.loads(line) for line in content.splitlines()] == [
        {
            "custom_id": "a-0",
            "body": {"messages": [{"role": "user", "content": "one"}], "temperature": 0.3},
        },
        {
            "custom_id": "b-0",
            "body": {"messages": [{"role": "user", "content": "two"}], "max_tokens": 5},
        },
    ]


async def test_error_file_lines_carry_the_retry_classification(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    fake.rate_limited, fake.bad_requests = {"b-0"}, {"c-0"}
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two"), item("c-0", "three")])
    await states(batch, job_id)
    status = await batch.status(job_id)
    assert (status.completed, status.failed) == (1, 2)
    results = await batch.results(job_id)
    assert list(results.outputs) == ["a-0"]
    limited, bad = results.errors["b-0"], results.errors["c-0"]
    assert (limited.status, limited.retryable) == (429, True)
    assert limited.message == "HTTP 429: Requests rate limit exceeded"
    assert (bad.status, bad.retryable, bad.message) == (
        400,
        False,
        "HTTP 400: Invalid model: mistral-nope",
    )


async def test_timeout_exceeded_is_expired_with_the_finished_part(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    fake.end = "expired"
    job_id = await batch.submit([item(f"r-{i}", f"q{i}") for i in range(4)])
    assert await states(batch, job_id) == "validating in_progress expired"
    results = await batch.results(job_id)
    assert sorted(results.outputs) == ["r-0", "r-1"]
    assert results.errors == {}


async def test_failed_job_carries_its_errors_and_no_files(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    fake.end = "failed"
    job_id = await batch.submit([item("a-0", "one")])
    await states(batch, job_id, polls=2)
    status = await batch.status(job_id)
    assert (status.state, status.message) == ("failed", "the input file could not be processed")
    results = await batch.results(job_id)
    assert (results.outputs, results.errors) == ({}, {})


async def test_cancel_requests_then_cancels_with_partial_results(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    fake.answered = 1
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two")])
    await batch.cancel(job_id)
    assert fake.seen[-1][:2] == ("POST", "/v1/batch/jobs/job-0001/cancel")
    assert await states(batch, job_id, polls=2) == "cancelling cancelled"
    assert list((await batch.results(job_id)).outputs) == ["a-0"]


async def test_unknown_job_is_mistrals_404(batch: MistralBatchAPI) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        await batch.status("job-nope")
    assert (caught.value.status, caught.value.message) == (404, "Batch job job-nope not found")


def test_limits_are_mistrals_documented_numbers() -> None:
    assert MistralBatchAPI.limits == BatchLimits(max_requests=100_000, max_bytes=512_000_000)


async def test_a_request_larger_than_a_whole_job_is_a_one_line_error(
    fake: FakeMistralBatches, batch: MistralBatchAPI, item: MakeItem
) -> None:
    batch.limits = BatchLimits(max_requests=10, max_bytes=1_000_000)
    with pytest.raises(UnsupportedConfig) as caught:
        await batch.submit([item("a-0", "x" * 1_200_000)])
    assert str(caught.value) == (
        "a request of 1.2 MB is over mistral's batch limit of 1.0 MB per job; send it "
        "without batch (batch=False) or make it smaller"
    )
    assert fake.files == {}


def test_azure_hosted_mistral_has_no_batch_endpoint() -> None:
    api = MistralAPI("mistral-large", base_url="https://m.eastus.models.ai.azure.com", api_key="az")
    with pytest.raises(UnsupportedFeature) as caught:
        api.batch_api()
    assert str(caught.value) == (
        "Azure-hosted Mistral has no batch endpoint; batch works with Mistral's own API "
        "(MISTRAL_API_KEY, https://api.mistral.ai): use it for batch, or remove batch "
        "(--batch) for this model"
    )


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("QUEUED", "validating"),
        ("RUNNING", "in_progress"),
        ("SUCCESS", "completed"),
        ("FAILED", "failed"),
        ("TIMEOUT_EXCEEDED", "expired"),
        ("CANCELLATION_REQUESTED", "cancelling"),
        ("CANCELLED", "cancelled"),
        ("PAUSED", "failed"),
    ],
)
def test_job_statuses_map_onto_openai_words(status: str, state: str) -> None:
    assert job_status({"status": status}).state == state
