"""together and groq batch jobs: the real translators against fakes of their APIs on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from gauge.errors import UnsupportedConfig
from gauge.model.batch.api import BatchAPI, BatchItem, BatchLimits
from gauge.model.providers.openai_compat.batch_services import GroqBatchAPI, TogetherBatchAPI
from gauge.model.providers.openai_compat.chat import OpenAIChatAPI
from gauge.model.providers.openai_compat.services import GroqAPI, TogetherAPI
from gauge.testing.batch_fakes.openai_style import (
    FakeGroqBatches,
    FakeTogetherBatches,
    OpenAIStyleBatches,
)

MakeItem = Callable[..., BatchItem]


@dataclass
class Service:
    fake: OpenAIStyleBatches
    api: OpenAIChatAPI
    batch: BatchAPI


@pytest.fixture(params=["together", "groq"])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    if request.param == "together":
        fake: OpenAIStyleBatches = FakeTogetherBatches(polls=2)
        await fake.start()
        api: OpenAIChatAPI = TogetherAPI("llama-test", base_url=f"{fake.url}/v1", api_key="sk-test")
    else:
        fake = FakeGroqBatches(polls=2)
        await fake.start()
        api = GroqAPI("llama-test", base_url=f"{fake.url}/openai/v1", api_key="sk-test")
    yield Service(fake, api, api.batch_api())  # type: ignore[arg-type]
    await api.close()
    await fake.stop()


async def states(batch: BatchAPI, job_id: str, polls: int = 3) -> str:
    return " ".join([(await batch.status(job_id)).state for _ in range(polls)])


async def test_round_trip_through_files_and_batches(service: Service, item: MakeItem) -> None:
    fake, batch = service.fake, service.batch
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two"), item("c-0", "three")])
    assert job_id == "batch_0001"
    prefix = fake.prefix
    assert [s[:2] for s in fake.seen] == [
        ("POST", f"{prefix}/files"),
        ("POST", f"{prefix}/batches"),
    ]
    assert fake.seen[0][2]["authorization"] == "Bearer sk-test"
    assert await states(batch, job_id) == "validating in_progress completed"
    results = await batch.results(job_id)
    assert {k: v.completion for k, v in results.outputs.items()} == {
        "a-0": "echo: one",
        "b-0": "echo: two",
        "c-0": "echo: three",
    }
    assert results.errors == {}
    assert fake.submissions == {"a-0": 1, "b-0": 1, "c-0": 1}


async def test_each_service_gets_its_own_line_shape_and_purpose(
    service: Service, item: MakeItem
) -> None:
    await service.batch.submit([item("a-0", "one", temperature=0.1)])
    line = json.loads(service.fake.files["file-0001"])
    body = {"model": "llama-test", "messages": [{"role": "user", "content": "one"}]}
    body["temperature"] = 0.1
    if isinstance(service.fake, FakeTogetherBatches):
        assert line == {"custom_id": "a-0", "body": body}
        assert b'name="purpose"\r\n\r\nbatch-api\r\n' in service.fake.bodies[0]
    else:
        url = "/v1/chat/completions"
        assert line == {"custom_id": "a-0", "method": "POST", "url": url, "body": body}
        assert b'name="purpose"\r\n\r\nbatch\r\n' in service.fake.bodies[0]


async def test_error_lines_carry_the_retry_classification(service: Service, item: MakeItem) -> None:
    service.fake.rate_limited, service.fake.bad_requests = {"b-0"}, {"c-0"}
    batch = service.batch
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two"), item("c-0", "three")])
    await states(batch, job_id)
    results = await batch.results(job_id)
    assert list(results.outputs) == ["a-0"]
    limited, bad = results.errors["b-0"], results.errors["c-0"]
    assert (limited.status, limited.retryable) == (429, True)
    assert (bad.status, bad.retryable) == (400, False)


async def test_expired_job_returns_the_answered_part(service: Service, item: MakeItem) -> None:
    service.fake.end = "expired"
    batch = service.batch
    job_id = await batch.submit([item(f"r-{i}", f"q{i}") for i in range(4)])
    assert await states(batch, job_id) == "validating in_progress expired"
    results = await batch.results(job_id)
    assert sorted(results.outputs) == ["r-0", "r-1"]
    assert results.errors == {}


async def test_failed_job_says_why(service: Service, item: MakeItem) -> None:
    service.fake.end = "failed"
    batch = service.batch
    job_id = await batch.submit([item("a-0", "one")])
    await states(batch, job_id, polls=2)
    status = await batch.status(job_id)
    assert (status.state, status.message) == ("failed", "bad input")


async def test_cancel_then_cancelled_with_partial_results(service: Service, item: MakeItem) -> None:
    service.fake.answered = 1
    batch = service.batch
    job_id = await batch.submit([item("a-0", "one"), item("b-0", "two")])
    await batch.cancel(job_id)
    assert service.fake.seen[-1][:2] == ("POST", f"{service.fake.prefix}/batches/{job_id}/cancel")
    assert await states(batch, job_id, polls=2) == "cancelling cancelled"
    results = await batch.results(job_id)
    assert (list(results.outputs), results.errors) == (["a-0"], {})


async def test_a_request_larger_than_a_whole_job_is_a_one_line_error(
    service: Service, item: MakeItem
) -> None:
    batch = service.batch
    batch.limits = BatchLimits(max_requests=10, max_bytes=1_000_000)
    with pytest.raises(UnsupportedConfig) as caught:
        await batch.submit([item("a-0", "x" * 1_500_000)])
    assert str(caught.value) == (
        f"a request of 1.5 MB is over {batch.provider}'s batch limit of 1.0 MB per job; send "
        "it without batch (batch=False) or make it smaller"
    )
    assert service.fake.files == {}


def test_limits_are_the_documented_numbers() -> None:
    assert TogetherBatchAPI.limits == BatchLimits(max_requests=50_000, max_bytes=100_000_000)
    assert GroqBatchAPI.limits == BatchLimits(max_requests=50_000, max_bytes=200_000_000)
    assert (TogetherBatchAPI.provider, GroqBatchAPI.provider) == ("together", "groq")
