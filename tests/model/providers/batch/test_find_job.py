"""`BatchAPI.find_job`: every translator finds the job it tagged through its fake's list
endpoint (paged, newest first), and stops at jobs older than the intent."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gauge.model.batch.api import FIND_SLACK, BatchAPI, BatchItem
from gauge.model.providers import _batch_wire
from gauge.model.providers.anthropic import AnthropicAPI
from gauge.model.providers.google import GoogleAPI
from gauge.model.providers.mistral import MistralAPI
from gauge.model.providers.openai_compat.services import GroqAPI, OpenAIAPI, TogetherAPI
from gauge.testing.batch_fakes.anthropic import FakeAnthropicBatches
from gauge.testing.batch_fakes.gemini import FakeGeminiBatches
from gauge.testing.batch_fakes.mistral import FakeMistralBatches
from gauge.testing.batch_fakes.openai_style import FakeGroqBatches, FakeTogetherBatches
from gauge.testing.openai_batch_server import OpenAIBatchServer

MakeItem = Callable[..., BatchItem]


@dataclass
class Case:
    batch: BatchAPI
    lists: Callable[[], int]
    """How many list requests the fake has answered."""


def counter(seen: list[Any], path: str) -> Callable[[], int]:
    return lambda: sum(1 for s in seen if s[0] == "GET" and s[1] == path)


@pytest.fixture(params=["openai", "azure", "groq", "together", "mistral", "google"])
async def case(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Case]:
    monkeypatch.setattr(_batch_wire, "LIST_PAGE", 2)  # three jobs: two pages
    name = request.param
    fake: Any
    if name in ("openai", "azure"):
        fake = OpenAIBatchServer()
        await fake.start()
        if name == "openai":
            api: Any = OpenAIAPI("gpt-4o-mini", base_url=fake.url, api_key="sk-test")
            path = "/v1/batches"
        else:
            base = f"http://127.0.0.1:{fake.port}"
            api = OpenAIAPI(
                "dep", base_url=base, api_key="az", azure=True, api_version="2025-01-01"
            )
            path = "/openai/batches"
    elif name in ("groq", "together"):
        fake = FakeGroqBatches() if name == "groq" else FakeTogetherBatches()
        await fake.start()
        chat = GroqAPI if name == "groq" else TogetherAPI
        api = chat("llama-test", base_url=f"{fake.url}{fake.prefix}", api_key="sk-test")
        path = f"{fake.prefix}/batches"
    elif name == "mistral":
        fake = FakeMistralBatches()
        await fake.start()
        api = MistralAPI("mistral-test", base_url=f"{fake.url}/v1", api_key="m-test")
        path = "/v1/batch/jobs"
    else:
        fake = FakeGeminiBatches()
        await fake.start()
        api = GoogleAPI("gemini-test", base_url=fake.url, api_key="g-test")
        path = "/v1beta/batches"
    yield Case(api.batch_api(), counter(fake.seen, path))
    await api.close()
    await fake.stop()


async def test_finds_the_job_it_tagged_across_pages(case: Case, item: MakeItem) -> None:
    since = time.time()
    made = [await case.batch.submit([item(f"{t}-0", t)], t) for t in ("t1", "t2", "t3")]
    assert await case.batch.find_job("t1", since, ["t1-0"], set()) == made[0]  # the oldest: page 2
    assert case.lists() in (1, 2)  # Together lists all in one answer; the others page
    assert await case.batch.find_job("t3", since, ["t3-0"], set()) == made[2]
    before = case.lists()
    assert await case.batch.find_job("t9", since, ["t9-0"], set()) is None
    assert case.lists() - before in (1, 2)


async def test_stops_at_jobs_older_than_the_intent(case: Case, item: MakeItem) -> None:
    for t in ("t1", "t2", "t3"):
        await case.batch.submit([item(f"{t}-0", t)], t)
    later = time.time() + FIND_SLACK + 3600  # an intent an hour after all of them
    before = case.lists()
    assert await case.batch.find_job("t1", later, ["t1-0"], set()) is None
    assert case.lists() - before == 1  # one page read, not the whole history


async def test_an_untagged_job_is_never_found(case: Case, item: MakeItem) -> None:
    await case.batch.submit([item("a-0", "a")])
    assert await case.batch.find_job("", time.time(), ["a-0"], set()) is None


@pytest.fixture
async def anthropic(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, BatchAPI]]:
    monkeypatch.setattr(_batch_wire, "LIST_PAGE", 2)
    async with FakeAnthropicBatches() as fake:
        api = AnthropicAPI("claude-test", base_url=fake.url, api_key="sk-ant-test")
        yield fake, api.batch_api()  # type: ignore[misc]
        await api.close()


async def test_anthropic_matches_the_one_unknown_batch_of_that_size_and_time(
    anthropic: tuple[Any, BatchAPI], item: MakeItem
) -> None:
    fake, batch = anthropic
    since = time.time()
    one = await batch.submit([item("a-0", "a")], "t1")
    two = await batch.submit([item("b-0", "b"), item("c-0", "c")], "t2")
    three = await batch.submit([item("d-0", "d"), item("e-0", "e")], "t3")
    assert await batch.find_job("t1", since, ["a-0"], set()) == one  # the only one of 1
    assert await batch.find_job("t2", since, ["b-0", "c-0"], set()) is None  # 2 of 2, running
    assert await batch.find_job("t2", since, ["b-0", "c-0"], {three}) == two  # one is known
    assert await batch.find_job("t3", since, ["x-0", "y-0", "z-0"], set()) is None  # none of 3
    later = since + 2 * FIND_SLACK
    assert await batch.find_job("t1", later, ["a-0"], set()) is None  # created long before
    lists = [s for s in fake.seen if s[:2] == ("GET", "/v1/messages/batches")]
    assert len(lists) == 2 + 2 + 2 + 2 + 1  # two pages each; the last stopped at old ones


async def test_anthropic_tells_ended_batches_of_the_same_size_apart_by_their_results(
    anthropic: tuple[Any, BatchAPI], item: MakeItem
) -> None:
    fake, batch = anthropic
    since = time.time()
    two = await batch.submit([item("b-0", "b"), item("c-0", "c")], "t2")
    three = await batch.submit([item("d-0", "d"), item("e-0", "e")], "t3")
    for job_id in (two, three):
        while not (await batch.status(job_id)).done:
            pass
    assert await batch.find_job("t3", since, ["e-0", "d-0"], set()) == three
    assert await batch.find_job("t2", since, ["b-0", "c-0"], set()) == two
    assert await batch.find_job("t4", since, ["b-0", "x-0"], set()) is None
    reads = [s[1] for s in fake.seen if s[0] == "GET" and s[1].endswith("/results")]
    assert reads == [f"/v1/messages/batches/{j}/results" for j in (three, three, two, three, two)]
