"""The collector with a fake BatchAPI: splits, flushes, places, backoff, ledger, re-attaching."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence, Set
from typing import Any

import pytest

from gauge.errors import ModelError
from gauge.model.api import FATAL, TRANSIENT, RetryDecision
from gauge.model.batch.api import (
    BatchAPI,
    BatchItem,
    BatchLimits,
    BatchRecord,
    BatchResults,
    BatchStatus,
    ItemError,
)
from gauge.model.batch.collector import Collector
from gauge.model.batch.config import BatchConfig
from gauge.model.batch.errors import BatchJobFailed
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessageUser
from gauge.model.output import ModelOutput
from gauge.model.request import ModelRequest


class Flaky(Exception):
    """A transient error of the fake provider."""


class FakeBatchAPI(BatchAPI):
    """Answers every request with its text upper-cased after `polls` polls."""

    provider = "fake"

    def __init__(self, limits: BatchLimits | None = None, polls: int = 0) -> None:
        if limits is not None:
            self.limits = limits
        self.polls = polls
        self.jobs: dict[str, list[str]] = {}
        self.log: list[str] = []
        self.ends: dict[str, str] = {}
        """job id -> final state other than completed."""
        self.errors: dict[str, ItemError] = {}
        self.fail_submit: list[Exception] = []
        self.tags: dict[str, str] = {}
        """tag -> the job created with it (what find_job finds)."""
        self.lose_answers = 0
        self.finds: list[tuple[str, int, frozenset[str]]] = []
        self.in_flight = 0
        self.peak = 0
        self._left: dict[str, int] = {}
        self._texts: dict[str, str] = {}

    def size(self, item: BatchItem) -> int:
        return len(str(item.request.input[-1].content))

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        if self.fail_submit:
            raise self.fail_submit.pop(0)
        job_id = f"job_{len(self.jobs) + 1}"
        self.jobs[job_id] = [i.custom_id for i in items]
        self.tags[tag] = job_id
        for item in items:
            self._texts[item.custom_id] = str(item.request.input[-1].content)
        self._left[job_id] = self.polls
        self.log.append(f"submit {job_id}")
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.lose_answers:  # the job is made, but its create answer never arrives
            self.lose_answers -= 1
            raise Flaky("connection reset")
        return job_id

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        self.finds.append((tag, len(custom_ids), frozenset(known)))
        self.log.append(f"find {tag}")
        return self.tags.get(tag)

    async def status(self, job_id: str) -> BatchStatus:
        self.log.append(f"status {job_id}")
        if self._left[job_id] > 0:
            self._left[job_id] -= 1
            return BatchStatus("in_progress", total=len(self.jobs[job_id]))
        self.in_flight -= 1
        return BatchStatus(self.ends.get(job_id, "completed"), message="bad file")  # type: ignore[arg-type]

    async def results(self, job_id: str) -> BatchResults:
        self.log.append(f"results {job_id}")
        results = BatchResults()
        ids = self.jobs[job_id]
        if self.ends.get(job_id) in ("expired", "cancelled"):
            ids = ids[:1]
        for custom_id in ids:
            if custom_id in self.errors:
                results.errors[custom_id] = self.errors[custom_id]
            else:
                text = self._texts[custom_id].upper()
                results.outputs[custom_id] = ModelOutput.from_content("fake", text)
        return results

    async def cancel(self, job_id: str) -> None:
        self.ends[job_id] = "cancelled"


class Ledger:
    """Records what the collector tells it; `known` answers `find`."""

    def __init__(
        self, known: dict[str, BatchRecord] | None = None, log: list[str] | None = None
    ) -> None:
        self.events: list[tuple[str, str, list[str]]] = []
        self.known = known or {}
        self.intents: list[BatchRecord] = []
        self.resolutions: list[tuple[str, str]] = []
        self.log = log if log is not None else []

    def intended(self, record: BatchRecord) -> None:
        assert record.intent and record.token
        self.intents.append(BatchRecord(**{**vars_of(record)}))
        self.log.append(f"intent {record.token}")

    def resolved(self, record: BatchRecord) -> None:
        self.resolutions.append((record.token, record.job_id))
        if not record.job_id:
            for custom_id in record.custom_ids:
                self.known.pop(custom_id, None)

    def jobs(self) -> Set[str]:
        return {r.job_id for r in self.known.values() if r.job_id}

    def submitted(self, record: BatchRecord) -> None:
        self.events.append(("submitted", record.job_id, list(record.custom_ids)))

    def finished(self, record: BatchRecord) -> None:
        self.events.append(("finished", record.job_id, list(record.custom_ids)))

    def find(self, custom_id: str) -> BatchRecord | None:
        return self.known.get(custom_id)


def vars_of(record: BatchRecord) -> dict[str, Any]:
    """A record's fields (a snapshot: the collector fills the job id in later)."""
    return {name: getattr(record, name) for name in BatchRecord.__slots__}


class Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def job(self, record: BatchRecord, status: BatchStatus) -> None:
        self.seen.append((record.job_id, status.state))


def classify(ex: BaseException) -> RetryDecision:
    return TRANSIENT if isinstance(ex, Flaky) else FATAL


def collector(api: FakeBatchAPI, sleeps: list[float] | None = None, **config: Any) -> Collector:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        await asyncio.sleep(0)

    settings = BatchConfig(**{"send_delay": 0.01, "tick": 1, **config})
    return Collector(api, "m", settings, sleep, classify)


def item(text: str, custom_id: str | None = None) -> BatchItem:
    request = ModelRequest([ChatMessageUser(content=text)], [], "auto", GenerateConfig())
    return BatchItem(custom_id or f"id-{text}", request)


async def ask_all(
    c: Collector, texts: list[str], ledger: Any = None, observer: Any = None
) -> list[Any]:
    return await asyncio.gather(*[c.ask(item(t), ledger, observer) for t in texts])


async def test_full_jobs_are_sent_at_once_and_answers_map_back() -> None:
    api = FakeBatchAPI()
    c = collector(api, size=3, send_delay=60)
    texts = [f"t{i}" for i in range(6)]
    answers = await asyncio.wait_for(ask_all(c, texts), 5)
    assert [a.completion for a in answers] == [t.upper() for t in texts]
    assert [a.metadata["batch"] for a in answers] == ["job_1"] * 3 + ["job_2"] * 3
    assert api.jobs == {"job_1": ["id-t0", "id-t1", "id-t2"], "job_2": ["id-t3", "id-t4", "id-t5"]}


async def test_a_partial_job_is_sent_after_send_delay() -> None:
    api = FakeBatchAPI()
    c = collector(api, size=100, send_delay=0.05)
    task = asyncio.ensure_future(ask_all(c, ["a", "b"]))
    await asyncio.sleep(0.01)
    assert api.jobs == {}
    answers = await asyncio.wait_for(task, 5)
    assert [a.completion for a in answers] == ["A", "B"]
    assert list(api.jobs.values()) == [["id-a", "id-b"]]


async def test_jobs_split_by_the_provider_request_limit() -> None:
    api = FakeBatchAPI(BatchLimits(max_requests=2, max_bytes=10**9))
    c = collector(api, size=100, send_delay=0.01)
    await asyncio.wait_for(ask_all(c, ["a", "b", "c", "d", "e"]), 5)
    assert [len(ids) for ids in api.jobs.values()] == [2, 2, 1]


async def test_jobs_split_by_bytes() -> None:
    api = FakeBatchAPI(BatchLimits(max_requests=100, max_bytes=10))
    c = collector(api, size=100, send_delay=0.01)
    await asyncio.wait_for(ask_all(c, ["aaaa", "bbbb", "cccc", "dddd", "eeeeeeeee"]), 5)
    assert list(api.jobs.values()) == [
        ["id-aaaa", "id-bbbb"],
        ["id-cccc", "id-dddd"],
        ["id-eeeeeeeee"],
    ]


async def test_max_size_mb_lowers_the_byte_limit() -> None:
    c = collector(FakeBatchAPI(), max_size_mb=1)
    assert c.max_bytes == 1024 * 1024
    assert collector(FakeBatchAPI()).max_bytes == FakeBatchAPI.limits.max_bytes


async def test_jobs_in_flight_are_capped_by_max_batches() -> None:
    api = FakeBatchAPI(polls=3)
    c = collector(api, size=1, max_batches=2)
    answers = await asyncio.wait_for(ask_all(c, list("abcde")), 5)
    assert len(api.jobs) == 5 and api.peak == 2
    assert [a.completion for a in answers] == list("ABCDE")


async def test_polls_back_off_from_tick_to_max_tick() -> None:
    api = FakeBatchAPI(polls=6)
    sleeps: list[float] = []
    c = collector(api, sleeps, size=1, tick=2, max_tick=6)
    await asyncio.wait_for(c.ask(item("a"), None, None), 5)
    assert sleeps == [2, 3, 4.5, 6, 6, 6, 6]
    assert api.log.count("status job_1") == 7


async def test_ledger_hears_of_the_job_before_the_first_poll() -> None:
    api = FakeBatchAPI(polls=1)
    ledger, observer = Ledger(), Observer()
    c = collector(api, size=2)
    original = api.status

    async def status(job_id: str) -> BatchStatus:
        assert ledger.events == [("submitted", "job_1", ["id-a", "id-b"])]
        return await original(job_id)

    api.status = status  # type: ignore[method-assign]
    await asyncio.wait_for(ask_all(c, ["a", "b"], ledger, observer), 5)
    assert ledger.events[-1] == ("finished", "job_1", ["id-a", "id-b"])
    assert observer.seen == [
        ("job_1", "validating"),
        ("job_1", "in_progress"),
        ("job_1", "completed"),
    ]


async def test_requests_of_different_ledgers_go_to_different_jobs() -> None:
    api = FakeBatchAPI()
    one, two = Ledger(), Ledger()
    c = collector(api, size=10)
    await asyncio.wait_for(
        asyncio.gather(c.ask(item("a"), one, None), c.ask(item("b"), two, None)), 5
    )
    assert sorted(api.jobs.values()) == [["id-a"], ["id-b"]]
    assert [e[2] for e in one.events] == [["id-a"], ["id-a"]]


async def test_a_job_a_previous_run_submitted_is_reattached_not_resent() -> None:
    api = FakeBatchAPI(polls=1)
    first = collector(api, size=3)
    ledger = Ledger()
    # A previous run submitted a, b, c and "crashed" before reading the answers.
    task = asyncio.ensure_future(ask_all(first, ["a", "b", "c"], ledger))
    while not ledger.events:
        await asyncio.sleep(0)
    task.cancel()
    record = BatchRecord("job_1", "fake", "m", ["id-a", "id-b", "id-c"], 0.0)
    resumed = collector(api, size=3)
    known = Ledger({cid: record for cid in record.custom_ids})
    answer = await asyncio.wait_for(resumed.ask(item("a"), known, None), 5)
    assert answer.completion == "A" and answer.metadata["batch"] == "job_1"
    assert known.events == [("finished", "job_1", ["id-a", "id-b", "id-c"])]
    known.known.clear()  # finished: the ledger no longer finds it
    later = await asyncio.wait_for(resumed.ask(item("c"), known, None), 5)
    assert later.completion == "C"
    assert list(api.jobs) == ["job_1"]  # nothing was sent again


async def test_transient_submit_errors_are_retried() -> None:
    api = FakeBatchAPI()
    api.fail_submit = [Flaky("503"), Flaky("503")]
    sleeps: list[float] = []
    c = collector(api, sleeps, size=1)
    answer = await asyncio.wait_for(c.ask(item("a"), None, None), 5)
    assert answer.completion == "A"
    assert sleeps[:2] == [1.0, 2.0]


async def test_fatal_submit_error_reaches_every_request_of_the_job() -> None:
    api = FakeBatchAPI()
    api.fail_submit = [ModelError("HTTP 401: bad key")]
    c = collector(api, size=2)
    results = await asyncio.gather(
        c.ask(item("a"), None, None), c.ask(item("b"), None, None), return_exceptions=True
    )
    assert [str(r) for r in results] == ["HTTP 401: bad key"] * 2


async def test_failed_job_is_an_error_naming_it() -> None:
    api = FakeBatchAPI()
    api.ends["job_1"] = "failed"
    c = collector(api, size=1)
    with pytest.raises(
        BatchJobFailed, match=r"^fake batch job job_1 failed: bad file; fix the cause"
    ):
        await asyncio.wait_for(c.ask(item("a"), None, None), 5)


async def test_expired_job_leaves_unanswered_requests_with_none() -> None:
    api = FakeBatchAPI()
    api.ends["job_1"] = "expired"
    c = collector(api, size=2)
    answers = await asyncio.wait_for(ask_all(c, ["a", "b"]), 5)
    assert answers[0].completion == "A" and answers[1] is None


async def test_item_errors_are_handed_back() -> None:
    api = FakeBatchAPI()
    api.errors["id-b"] = ItemError("rate limited", 429, retryable=True)
    c = collector(api, size=2)
    answers = await asyncio.wait_for(ask_all(c, ["a", "b"]), 5)
    assert answers[1] == ItemError("rate limited", 429, retryable=True)


async def test_a_reattached_job_that_left_a_request_unanswered_is_not_waited_on_again() -> None:
    api = FakeBatchAPI()
    c = collector(api, size=2)
    first = await asyncio.wait_for(ask_all(c, ["a", "b"]), 5)
    assert [o.completion for o in first] == ["A", "B"]
    api.ends["job_1"] = "expired"  # read again, job_1 answers only id-a
    record = BatchRecord("job_1", "fake", "m", ["id-a", "id-b"], 0.0)
    stale = Ledger({"id-b": record})  # a ledger that never forgets the job
    resumed = collector(api, size=1)
    assert await asyncio.wait_for(resumed.ask(item("b"), stale, None), 5) is None
    again = await asyncio.wait_for(resumed.ask(item("b"), stale, None), 5)
    assert again.completion == "B" and again.metadata["batch"] == "job_2"


async def test_a_job_the_ledger_cannot_record_is_cancelled() -> None:
    api = FakeBatchAPI(polls=5)

    class Full(Ledger):
        def submitted(self, record: BatchRecord) -> None:
            raise OSError("No space left on device")

    c = collector(api, size=1)
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(c.ask(item("a"), Full(), None), 5)
    assert api.ends == {"job_1": "cancelled"}


async def test_a_request_given_up_before_its_job_is_sent_is_not_sent() -> None:
    api = FakeBatchAPI()
    c = collector(api, size=10, send_delay=0.05)
    gone = c.ask(item("gone"), None, None)
    kept = c.ask(item("kept"), None, None)
    gone.cancel()
    assert (await asyncio.wait_for(kept, 5)).completion == "KEPT"
    assert list(api.jobs.values()) == [["id-kept"]]


# -- intents: a crash inside the create call ------------------------------------------


async def test_the_intent_is_recorded_before_the_create_call_and_tags_the_job() -> None:
    api = FakeBatchAPI()
    ledger = Ledger(log=api.log)
    c = collector(api, size=2)
    await asyncio.wait_for(ask_all(c, ["a", "b"], ledger), 5)
    [intent] = ledger.intents
    assert api.log[:2] == [f"intent {intent.token}", "submit job_1"]
    assert intent.job_id == "" and intent.custom_ids == ["id-a", "id-b"]
    assert len(intent.token) == 24 and api.tags == {intent.token: "job_1"}
    assert ledger.events[0] == ("submitted", "job_1", ["id-a", "id-b"])


async def test_a_ledger_that_cannot_record_the_intent_creates_no_job() -> None:
    api = FakeBatchAPI()

    class Full(Ledger):
        def intended(self, record: BatchRecord) -> None:
            raise OSError("No space left on device")

    c = collector(api, size=1)
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(c.ask(item("a"), Full(), None), 5)
    assert api.jobs == {}


async def test_an_intent_whose_job_exists_is_reattached_without_submitting() -> None:
    api = FakeBatchAPI(polls=1)
    # The killed run: its intent was recorded and the job created, but its id never read.
    made = await api.submit([item("a"), item("b")], "tok-1")
    intent = BatchRecord("", "fake", "m", ["id-a", "id-b"], 1765000000.0, token="tok-1")
    ledger = Ledger({"id-a": intent, "id-b": intent})
    resumed = collector(api, size=2)
    answers = await asyncio.wait_for(ask_all(resumed, ["a", "b"], ledger), 5)
    assert [a.completion for a in answers] == ["A", "B"]
    assert {a.metadata["batch"] for a in answers} == {made}
    assert list(api.jobs) == ["job_1"]  # nothing submitted again
    assert ledger.resolutions == [("tok-1", "job_1")]
    assert api.finds == [("tok-1", 2, frozenset())]  # looked up once for both requests
    assert ledger.events == [("finished", "job_1", ["id-a", "id-b"])]


async def test_an_intent_whose_job_was_never_created_is_submitted_once() -> None:
    api = FakeBatchAPI()
    intent = BatchRecord("", "fake", "m", ["id-a", "id-b"], 1765000000.0, token="tok-2")
    ledger = Ledger({"id-a": intent, "id-b": intent})
    resumed = collector(api, size=2)
    answers = await asyncio.wait_for(ask_all(resumed, ["a", "b"], ledger), 5)
    assert [a.completion for a in answers] == ["A", "B"]
    assert list(api.jobs.values()) == [["id-a", "id-b"]]
    assert ledger.resolutions == [("tok-2", "")] and ledger.known == {}
    assert [f[0] for f in api.finds] == ["tok-2"]


async def test_a_lookup_skips_jobs_the_ledger_already_knows() -> None:
    api = FakeBatchAPI()
    api.tags["tok-3"] = "job_9"  # a tagless provider's best match is a job already recorded
    api.jobs["job_9"] = ["id-z"]
    recorded = BatchRecord("job_9", "fake", "m", ["id-z"], 1765000000.0, state="completed")
    intent = BatchRecord("", "fake", "m", ["id-a"], 1765000000.0, token="tok-3")
    ledger = Ledger({"id-a": intent, "id-z": recorded})
    c = collector(api, size=1)
    answer = await asyncio.wait_for(c.ask(item("a"), ledger, None), 5)
    assert answer.completion == "A" and answer.metadata["batch"] == "job_2"
    assert api.finds == [("tok-3", 1, frozenset({"job_9"}))]
    assert ledger.resolutions == [("tok-3", "")]


async def test_a_create_whose_answer_was_lost_is_found_not_created_twice() -> None:
    api = FakeBatchAPI()
    api.lose_answers = 1
    c = collector(api, size=2)
    answers = await asyncio.wait_for(ask_all(c, ["a", "b"]), 5)
    assert [a.metadata["batch"] for a in answers] == ["job_1", "job_1"]
    assert list(api.jobs) == ["job_1"]
    assert [line.split()[0] for line in api.log[:2]] == ["submit", "find"]


async def test_a_lookup_that_fails_sends_the_requests_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeBatchAPI()

    async def broken(*args: Any) -> str | None:
        raise ModelError("HTTP 403: listing batches is not allowed for this key")

    api.find_job = broken  # type: ignore[method-assign]
    intent = BatchRecord("", "fake", "m", ["id-a"], 1765000000.0, token="tok-4")
    ledger = Ledger({"id-a": intent})
    answer = await asyncio.wait_for(collector(api, size=1).ask(item("a"), ledger, None), 5)
    assert answer.completion == "A" and list(api.jobs) == ["job_1"]
    assert ledger.resolutions == [("tok-4", "")]
    assert "could not look up batch job tok-4" in caplog.text


async def test_a_ledger_that_cannot_record_a_resolution_fails_its_requests() -> None:
    api = FakeBatchAPI()

    class Full(Ledger):
        def resolved(self, record: BatchRecord) -> None:
            raise OSError("No space left on device")

    intent = BatchRecord("", "fake", "m", ["id-a"], 1765000000.0, token="tok-5")
    c = collector(api, size=1)
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(c.ask(item("a"), Full({"id-a": intent}), None), 5)
    assert api.jobs == {}
