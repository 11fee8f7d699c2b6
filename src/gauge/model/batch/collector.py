"""The collector: one per model, event loop and BatchConfig; requests in, jobs out.

A request waits in `pending` until `size` requests (or the provider's request or
byte limit) fill a job, or `send_delay` passes since the first one arrived.
Each job is its own task: it takes one of `max_batches` places, submits,
tells the ledger (before any wait, so a crash after it is recoverable), polls
with backoff (`tick`, growing by half each time up to `max_tick`), reads the
results and hands each request its outcome: a ModelOutput, an ItemError, or
None when the job ended without answering it (expired, cancelled). The ledger
and observer are the ones in the caller's context when the request arrived.

Before each create call the ledger records an intent (a fresh random token,
which the job is tagged with), so a crash inside the call is recoverable.

A request a previous run already submitted (the ledger finds its custom id)
is not sent again: it waits on that job, watched once however many requests
wait on it; answers for requests not asked for yet are kept until they are.
A request the ledger finds only in an intent (the run died inside the create
call) waits while the provider's job list is searched for the token once
(`BatchAPI.find_job`): found, the job is re-attached like a recorded one;
not found, it was never created and the requests are sent as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Set
from dataclasses import dataclass
from typing import Any, TypeVar

from gauge.model.api import RetryDecision
from gauge.model.batch.api import (
    BatchAPI,
    BatchItem,
    BatchLedger,
    BatchObserver,
    BatchRecord,
    BatchResults,
    BatchStatus,
    ItemError,
)
from gauge.model.batch.config import BatchConfig
from gauge.model.batch.errors import BatchJobFailed
from gauge.model.output import ModelOutput
from gauge.model.request import Sleep

log = logging.getLogger("gauge.model")

Outcome = ModelOutput | ItemError | None
"""A request's answer from a job; None: the job ended without answering it."""

Classify = Callable[[BaseException], RetryDecision]
T = TypeVar("T")

GROWTH = 1.5
"""Each poll interval is this much longer than the last, up to `max_tick`."""
CALL_TRIES = 6
"""Tries of one submit, poll or results call before its error reaches the requests."""


@dataclass(slots=True)
class Pending:
    """A request waiting for its job's answer."""

    item: BatchItem
    future: asyncio.Future[Outcome]
    ledger: BatchLedger | None
    observer: BatchObserver | None
    size: int


class Collector:
    """Collect requests into jobs of one BatchAPI and hand back their outcomes."""

    def __init__(
        self, api: BatchAPI, model: str, config: BatchConfig, sleep: Sleep, classify: Classify
    ) -> None:
        self.api = api
        self.model = model
        self.config = config
        self.sleep = sleep
        self.classify = classify
        self.max_requests = min(config.size, api.limits.max_requests)
        self.max_bytes = min(api.limits.max_bytes, config.max_bytes or api.limits.max_bytes)
        self.jobs = 0
        """Jobs submitted so far (tests and benchmarks read it)."""
        self._pending: list[Pending] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._places = asyncio.Semaphore(config.max_batches)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()
        self._finished: set[str] = set()
        """Jobs whose answers were handed out: a request still without one is sent anew."""
        self._waiting: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._kept: dict[str, Outcome] = {}
        self._known: set[str] = set()
        """Jobs submitted or re-attached here (a tagless `find_job` must not pick them)."""
        self._looking: dict[str, list[Pending]] = {}
        """Earlier runs' intents being looked up (by token) and the requests waiting on each."""
        self._lookups = asyncio.Lock()

    def ask(
        self,
        item: BatchItem,
        ledger: BatchLedger | None,
        observer: BatchObserver | None,
    ) -> asyncio.Future[Outcome]:
        """`item`'s outcome, to await: from a job a previous run submitted, or a new one.

        A future rather than a coroutine: 20,000 waiting requests hold one frame less.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        custom_id = item.custom_id
        if custom_id in self._kept:
            future.set_result(self._kept.pop(custom_id))
            return future
        record = ledger.find(custom_id) if ledger is not None else None
        if record is not None and record.intent and ledger is not None:
            waiting = Pending(item, future, ledger, observer, 0)
            if record.token not in self._looking:
                self._looking[record.token] = []
                self._spawn(self._look_up(record, ledger, observer))
            self._looking[record.token].append(waiting)
        elif record is not None and record.job_id not in self._finished:
            self._waiting.setdefault(custom_id, []).append(future)
            if record.job_id not in self._watched:
                self._watched.add(record.job_id)
                self._spawn(self._adopt(record, ledger, observer))
        else:
            self.add(Pending(item, future, ledger, observer, self.api.size(item)))
        return future

    def add(self, pending: Pending) -> None:
        """Queue a request; send a job when it is full."""
        if self._pending and self._bytes + pending.size > self.max_bytes:
            self.flush()
        self._pending.append(pending)
        self._bytes += pending.size
        if len(self._pending) >= self.max_requests:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.config.send_delay, self.flush)

    def flush(self) -> None:
        """Send what is pending now, one job per ledger and observer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._bytes = self._pending, [], 0
        groups: dict[tuple[int, int], list[Pending]] = {}
        for entry in pending:
            if not entry.future.done():  # a caller that gave up is not paid for
                groups.setdefault((id(entry.ledger), id(entry.observer)), []).append(entry)
        for group in groups.values():
            self._spawn(self._job(group))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _job(self, group: list[Pending]) -> None:
        """Submit one job, wait for it, hand out its answers."""
        async with self._places:
            group = [p for p in group if not p.future.done()]  # gave up while waiting
            if not group:
                return
            first = group[0]
            items = [p.item for p in group]
            record = BatchRecord(
                "",
                self.api.provider,
                self.model,
                [item.custom_id for item in items],
                time.time(),
                token=secrets.token_hex(12),
            )
            try:
                if first.ledger is not None:  # durable before the create call
                    first.ledger.intended(record)
                job_id = await self._create(items, record)
                self.jobs += 1
                record.job_id = job_id
                self._known.add(job_id)
                if first.ledger is not None:
                    await self._record(first.ledger, record)
                _tell(first.observer, record, BatchStatus("validating", total=len(items)))
                results = await self._wait(record, first.observer)
            except BaseException as ex:
                for entry in group:
                    if not entry.future.done():
                        entry.future.set_exception(ex)
                if not isinstance(ex, Exception):
                    raise
                return
        self._finished.add(job_id)
        for entry in group:
            if not entry.future.done():
                entry.future.set_result(outcome(results, entry.item.custom_id, job_id))
        if first.ledger is not None:
            first.ledger.finished(record)

    async def _create(self, items: list[BatchItem], record: BatchRecord) -> str:
        """Create the job, tagged with the record's token. A retry first looks for the
        job: a create whose answer was lost (a timeout, a reset) may have made it."""
        tries = 0

        async def attempt() -> str:
            nonlocal tries
            tries += 1
            if tries > 1:
                found = await self._find(record, self._known)
                if found is not None:
                    return found
            return await self.api.submit(items, record.token)

        return await self._retrying(attempt)

    async def _find(self, record: BatchRecord, known: Set[str]) -> str | None:
        return await self.api.find_job(record.token, record.submitted, record.custom_ids, known)

    async def _look_up(
        self, intent: BatchRecord, ledger: BatchLedger, observer: BatchObserver | None
    ) -> None:
        """Resolve an earlier run's intent: re-attach to its job, or send its requests."""
        async with self._lookups:  # one at a time: a tagless match must not be taken twice
            known = self._known | set(ledger.jobs())
            try:
                job_id = await self._retrying(lambda: self._find(intent, known))
            except Exception as ex:  # cannot look: sending again may pay twice; losing is worse
                log.warning("could not look up batch job %s (%s); sending again", intent.token, ex)
                job_id = None
            if job_id is not None and job_id in known:
                job_id = None
            if job_id is not None:
                self._known.add(job_id)
        waiting = self._looking.pop(intent.token, [])
        intent.job_id = job_id or ""
        try:
            ledger.resolved(intent)
        except Exception as ex:  # the journal cannot say what happened: fail, don't pay
            for entry in waiting:
                if not entry.future.done():
                    entry.future.set_exception(ex)
            return
        if job_id is None:
            for entry in waiting:
                if entry.future.done():
                    continue
                try:
                    entry.size = self.api.size(entry.item)
                except Exception as ex:  # (a request over the provider's limits)
                    entry.future.set_exception(ex)
                    continue
                self.add(entry)
            return
        for entry in waiting:
            self._waiting.setdefault(entry.item.custom_id, []).append(entry.future)
        self._watched.add(job_id)
        await self._adopt(intent, ledger, observer)

    async def _record(self, ledger: BatchLedger, record: BatchRecord) -> None:
        """Tell the ledger; if it cannot record the job, cancel it rather than pay for
        answers a crash would lose track of."""
        try:
            ledger.submitted(record)
        except Exception:
            with contextlib.suppress(Exception):
                await self.api.cancel(record.job_id)
            raise

    async def _adopt(
        self, record: BatchRecord, ledger: BatchLedger | None, observer: BatchObserver | None
    ) -> None:
        """Wait on a job a previous run submitted; keep answers nobody waits for yet."""
        try:
            results = await self._wait(record, observer)
        except Exception as ex:
            self._finished.add(record.job_id)
            for custom_id in record.custom_ids:
                for future in self._waiting.pop(custom_id, ()):
                    if not future.done():
                        future.set_exception(ex)
            return
        self._finished.add(record.job_id)
        for custom_id in record.custom_ids:
            answer = outcome(results, custom_id, record.job_id)
            futures = self._waiting.pop(custom_id, None)
            if futures is None:
                if answer is not None:
                    self._kept[custom_id] = answer
                continue
            for future in futures:
                if not future.done():
                    future.set_result(answer)
        if ledger is not None:
            ledger.finished(record)

    async def _wait(self, record: BatchRecord, observer: BatchObserver | None) -> BatchResults:
        """Poll with backoff until the job is done; its results (failed: BatchJobFailed)."""
        delay = self.config.tick
        while True:
            await self.sleep(delay)
            delay = min(delay * GROWTH, self.config.max_tick)
            status = await self._retrying(lambda: self.api.status(record.job_id))
            record.state = status.state
            _tell(observer, record, status)
            if status.done:
                break
        if status.state == "failed":
            why = status.message or "no reason given"
            raise BatchJobFailed(
                f"{self.api.provider} batch job {record.job_id} failed: {why}; fix the cause, "
                "or send these requests in real time (batch=False)"
            )
        return await self._retrying(lambda: self.api.results(record.job_id))

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` again after a retryable error, with backoff, up to CALL_TRIES times."""
        wait = 1.0
        for tries in range(1, CALL_TRIES + 1):
            try:
                return await call()
            except Exception as ex:
                decision = self.classify(ex)
                if not decision.retryable or tries == CALL_TRIES:
                    raise
                log.warning("batch call failed (%s); trying again", ex)
                await self.sleep(decision.retry_after or wait)
                wait = min(wait * 2, 60.0)
        raise AssertionError("unreachable")


def outcome(results: BatchResults, custom_id: str, job_id: str) -> Outcome:
    """What a finished job says about one request; outputs are marked with the job id."""
    output = results.outputs.get(custom_id)
    if output is not None:
        if output.metadata is None:
            output.metadata = {"batch": job_id}
        else:
            output.metadata["batch"] = job_id
        return output
    return results.errors.get(custom_id)


def _tell(observer: BatchObserver | None, record: BatchRecord, status: BatchStatus) -> None:
    if observer is None:
        return
    try:
        observer.job(record, status)
    except Exception:  # a display's bug must not lose a paid-for job
        log.exception("batch observer failed")
