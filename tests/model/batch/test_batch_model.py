"""`Model.generate` with `batch` on, end to end against the fake OpenAI batch server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Set
from pathlib import Path
from typing import Any

import pytest

from gauge.errors import UnsupportedFeature
from gauge.model.batch.api import BatchRecord, batch_ledger
from gauge.model.batch.errors import BatchItemFailed
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.testing.openai_batch_server import OpenAIBatchServer

FAST = {"size": 4, "send_delay": 0.02, "tick": 0.01, "max_tick": 0.02}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
async def server() -> AsyncIterator[OpenAIBatchServer]:
    async with OpenAIBatchServer() as running:
        yield running


@pytest.fixture
async def model(server: OpenAIBatchServer) -> AsyncIterator[Model]:
    built = get_model(
        "openai/gpt-4o-mini",
        base_url=server.url,
        api_key="sk-test",
        config={"batch": FAST, "max_retries": 0},
        memoize=False,
    )
    yield built
    await built.close()


class NoIntents:
    """A ledger's intent hooks, for ledgers that only watch submitted jobs."""

    def intended(self, record: BatchRecord) -> None:
        assert record.intent and record.token

    def resolved(self, record: BatchRecord) -> None:
        raise AssertionError("no intent was recorded, so none is resolved")

    def jobs(self) -> Set[str]:
        return set()


async def ask(model: Model, *texts: str, **config: Any) -> list[Any]:
    calls = [model.generate(t, config=config or None) for t in texts]
    return await asyncio.wait_for(asyncio.gather(*calls), 10)


async def test_generate_goes_through_jobs(server: OpenAIBatchServer, model: Model) -> None:
    outputs = await ask(model, *(f"question {i}" for i in range(6)))
    assert [o.completion for o in outputs] == [f"question {i}" for i in range(6)]
    assert [o.metadata["batch"] for o in outputs] == ["batch_1"] * 4 + ["batch_2"] * 2
    stats = server.stats()
    assert (stats["jobs"], stats["realtime"], stats["duplicates"]) == (2, 0, 0)
    assert model.usage.output_tokens == 12  # two words each, counted like real-time usage


async def test_a_cache_hit_never_reaches_a_job(server: OpenAIBatchServer, model: Model) -> None:
    first = await ask(model, "cached question", cache=True)
    assert first[0].metadata == {"batch": "batch_1", "cache": "miss"}
    again = await ask(model, "cached question", cache=True)
    # The stored answer keeps the job it came from; a hit is not charged at all.
    assert again[0].metadata == {"batch": "batch_1", "cache": "hit"}
    assert again[0].completion == "cached question"
    assert server.stats()["jobs"] == 1


async def test_a_retryable_item_error_goes_real_time(
    server: OpenAIBatchServer, model: Model
) -> None:
    server.fail("busy", 429)
    outputs = await ask(model, "busy", "calm")
    assert [o.completion for o in outputs] == ["busy", "calm"]
    assert "batch" not in (outputs[0].metadata or {})
    assert server.realtime == 1
    assert server.realtime_bodies[0]["messages"] == [{"role": "user", "content": "busy"}]


async def test_a_bad_request_in_a_job_is_a_typed_error(
    server: OpenAIBatchServer, model: Model
) -> None:
    server.fail("bad", 400)
    with pytest.raises(
        BatchItemFailed, match=r"^openai batch request \w+-0 failed: HTTP 400: injected 400$"
    ):
        await ask(model, "bad")
    assert server.realtime == 0


async def test_expired_requests_go_to_the_next_job(server: OpenAIBatchServer, model: Model) -> None:
    server.end_next("expired", answered=1)
    outputs = await ask(model, "one", "two")
    assert [o.metadata["batch"] for o in outputs] == ["batch_1", "batch_2"]
    assert sorted(server.stats()["submissions"].values()) == [1, 2]
    assert server.realtime == 0


async def test_requests_unanswered_three_times_go_real_time(
    server: OpenAIBatchServer, model: Model
) -> None:
    for _ in range(3):
        server.end_next("cancelled")
    outputs = await ask(model, "patience")
    assert outputs[0].completion == "patience"
    assert (server.stats()["jobs"], server.realtime) == (3, 1)


async def test_failed_job_fails_its_requests(server: OpenAIBatchServer, model: Model) -> None:
    server.end_next("failed")
    with pytest.raises(
        Exception, match=r"^openai batch job batch_1 failed: the job failed \(injected\)"
    ):
        await ask(model, "x")


async def test_timeout_does_not_bound_the_job(server: OpenAIBatchServer, model: Model) -> None:
    server.polls = 8  # ~0.2 s of polling
    outputs = await ask(model, "slow", timeout=0.05)
    assert outputs[0].completion == "slow"


async def test_streams_are_not_batched(server: OpenAIBatchServer, model: Model) -> None:
    deltas = [delta async for delta in model.stream("streamed reply")]
    assert "".join(deltas) == "streamed reply"
    assert (server.stats()["jobs"], server.realtime) == (0, 1)


async def test_the_ledger_in_context_hears_of_each_job(
    server: OpenAIBatchServer, model: Model
) -> None:
    events: list[tuple[str, BatchRecord]] = []

    class Ledger(NoIntents):
        def submitted(self, record: BatchRecord) -> None:
            events.append(("submitted", record))

        def finished(self, record: BatchRecord) -> None:
            events.append(("finished", record))

        def find(self, custom_id: str) -> BatchRecord | None:
            return None

    token = batch_ledger.set(Ledger())
    try:
        await ask(model, "a", "b")
    finally:
        batch_ledger.reset(token)
    assert [e[0] for e in events] == ["submitted", "finished"]
    record = events[0][1]
    assert (record.job_id, record.provider, record.model) == ("batch_1", "openai", "gpt-4o-mini")
    assert sorted(record.custom_ids) == sorted(server.stats()["submissions"])
    assert record.state == "completed"


async def test_a_resumed_run_reattaches_instead_of_resubmitting(server: OpenAIBatchServer) -> None:
    records: dict[str, BatchRecord] = {}

    class Ledger(NoIntents):
        def submitted(self, record: BatchRecord) -> None:
            records.update(dict.fromkeys(record.custom_ids, record))

        def finished(self, record: BatchRecord) -> None:
            pass

        def find(self, custom_id: str) -> BatchRecord | None:
            return records.get(custom_id)

    server.polls = 1000  # the first run never sees its answers
    first = get_model("openai/gpt-4o-mini", base_url=server.url, api_key="k", memoize=False)
    token = batch_ledger.set(Ledger())
    try:
        task = asyncio.ensure_future(ask(first, "p", "q", batch=FAST))
        while not records:
            await asyncio.sleep(0.01)
        task.cancel()
        server.polls = 0
        server.jobs["batch_1"].polls_left = 0
        second = get_model("openai/gpt-4o-mini", base_url=server.url, api_key="k", memoize=False)
        outputs = await ask(second, "p", "q", batch=FAST)
    finally:
        batch_ledger.reset(token)
    assert [o.completion for o in outputs] == ["p", "q"]
    assert [o.metadata["batch"] for o in outputs] == ["batch_1", "batch_1"]
    assert server.stats()["jobs"] == 1 and server.stats()["duplicates"] == 0
    await first.close()
    await second.close()


async def test_provider_without_batch_endpoint_is_one_line() -> None:
    model = get_model("mock/test", config={"batch": True}, memoize=False)
    with pytest.raises(UnsupportedFeature) as caught:
        await model.generate("hi")
    assert str(caught.value) == (
        "provider 'mock' has no batch endpoint; batch works with openai, azure openai, "
        "anthropic, google, together, groq, mistral: remove batch (--batch) for this model"
    )


async def test_batch_off_per_call_sends_in_real_time(
    server: OpenAIBatchServer, model: Model
) -> None:
    outputs = await ask(model, "now", batch=False)
    assert outputs[0].completion == "now" and server.realtime == 1


async def test_a_resume_with_the_same_model_object_gets_the_same_ids(
    server: OpenAIBatchServer, model: Model
) -> None:
    class Run(NoIntents):
        """One run's ledger; `earlier` is what the run it resumes recorded."""

        def __init__(self, earlier: dict[str, BatchRecord]) -> None:
            self.earlier = earlier
            self.records: dict[str, BatchRecord] = {}

        def submitted(self, record: BatchRecord) -> None:
            self.records.update(dict.fromkeys(record.custom_ids, record))

        def finished(self, record: BatchRecord) -> None:
            pass

        def find(self, custom_id: str) -> BatchRecord | None:
            return self.earlier.get(custom_id)

    server.polls = 1000  # the first run never sees its answers
    first = Run({})
    token = batch_ledger.set(first)
    try:
        task = asyncio.ensure_future(ask(model, "same", "same", "other"))
        while len(first.records) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
    finally:
        batch_ledger.reset(token)
    server.jobs["batch_1"].polls_left = 0
    server.polls = 0
    token = batch_ledger.set(Run(first.records))  # the resume: same model, new run
    try:
        outputs = await ask(model, "same", "same", "other")
    finally:
        batch_ledger.reset(token)
    assert [o.completion for o in outputs] == ["same", "same", "other"]
    assert [o.metadata["batch"] for o in outputs] == ["batch_1"] * 3
    assert server.stats()["jobs"] == 1 and server.stats()["duplicates"] == 0
