"""The pipeline: one list of stages, built once per Model, for every kind of call.

    total deadline -> cache -> batch -> retry -> connection key -> attempt -> provider

The first stage listed is the outermost. generate, stream and loglikelihood
batches all travel as a `ModelRequest` through the same stages; only the
innermost provider call differs by `request.operation` (attempt.py). The retry
stage hands each request its `ConnectionKey` (rate/keys.py), which the key stage
uses for the key-wide pause, the RPM/TPM budgets and an adaptive connection
slot: retry wraps it, so backoff sleeps and budget waits never hold a slot.
Response headers come back on the output (`ModelOutput.headers`) or on the
error (`.headers`), never through a side channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Protocol

from gauge.errors import ModelTimeout
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.attempt import AttemptTimeout, attempt, classify, provider_call
from gauge.model.batch.stage import batch_stage
from gauge.model.cache.stage import response_cache
from gauge.model.output import ModelOutput
from gauge.model.pool import Finder, pool_finder
from gauge.model.rate.keys import ConnectionKey, connection_key
from gauge.model.rate.stage import key_stage
from gauge.model.rate.stop import FatalStop
from gauge.model.request import Call, ModelRequest, Sleep, Stage
from gauge.model.retry import Attempt, RetryPolicy, attach_history, describe

Clock = Callable[[], float]

call_observer: ContextVar[Callable[[RetryDecision], None] | None] = ContextVar(
    "gauge_call_observer", default=None
)
"""Called with the decision for every failed attempt made in this context.

The eval runner sets one per sample to count retries and rate-limit hits; the
model layer knows nothing about who listens.
"""


class BackoffLender(Protocol):
    """What a caller lends while one of its requests sleeps between attempts."""

    def lend(self) -> None:
        """The request starts a backoff sleep: its caller's place may serve another."""

    async def reclaim(self) -> None:
        """The sleep is over: wait to get the place back before the next attempt."""


backoff_lender: ContextVar[BackoffLender | None] = ContextVar("gauge_backoff_lender", default=None)
"""Told when a request of this context sleeps between attempts.

The eval runner sets one per sample: a sample sleeping in backoff after a failure
that left the key as it was (a transient error, a sporadic 429) gives its place
among the samples in flight to the next one, so `max_connections` samples keep
sending while some wait (the sleep already holds no connection slot). A sample
waiting out a rate limit that slowed the key keeps its place.
"""


def observe(decision: RetryDecision) -> None:
    """Tell this context's observer, if any, about a failed attempt."""
    observer = call_observer.get()
    if observer is not None:
        observer(decision)


def build_pipeline(inner: Call, stages: Sequence[Stage]) -> Call:
    """Wrap `inner` in `stages`; the first stage listed is the outermost."""
    call = inner
    for wrap in reversed(stages):
        call = wrap(call)
    return call


def model_pipeline(
    api: ModelAPI,
    policy: RetryPolicy,
    sleep: Sleep,
    clock: Clock,
    replicas: Sequence[ModelAPI] | None = None,
) -> Call:
    """The one pipeline of a Model: every operation goes through these stages.

    With `replicas` (an endpoint pool, pool.py) each attempt goes to the replica
    the finder picks; `api` names the model (cache keys, usage, display).
    """
    find = pool_finder(replicas, clock) if replicas else key_finder(api, clock)
    return build_pipeline(
        provider_call(api),
        [
            total_deadline,
            response_cache(api),
            batch_stage(api, sleep),
            retry(api, policy, sleep, find),
            key_stage(api, sleep),
            attempt,
        ],
    )


def key_finder(api: ModelAPI, clock: Clock) -> Finder:
    """The running loop's ConnectionKey of `api` (one per loop: futures cannot cross)."""
    name = api.connection_key()
    start = api.max_connections()
    most = api.max_connections_limit()

    def find(request: ModelRequest | None = None, /) -> ConnectionKey:
        return connection_key(name, start, clock, most)

    return find


def total_deadline(call: Call) -> Call:
    """Enforce `config.timeout` over all attempts and waits."""

    async def stage(request: ModelRequest) -> ModelOutput:
        seconds = request.config.timeout
        if seconds is None or (request.config.batch and request.operation == "generate"):
            return await call(request)  # a batch job's wait is not bounded by it (batch/stage.py)
        if request.operation == "stream":
            request.deadline = time.monotonic() + seconds
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await call(request)
        except TimeoutError as ex:
            if not deadline.expired():
                raise
            error = ModelTimeout(
                f"model call exceeded timeout={seconds:g}s after "
                f"{len(request.attempts)} failed attempt(s); raise the timeout to wait longer"
            )
            attach_history(error, request.attempts)
            raise error from ex

    return stage


def retry(api: ModelAPI, policy: RetryPolicy, sleep: Sleep, find: Finder) -> Stage:
    """Retry rate-limit and transient failures, bounded by count and total wait;
    fail at once while the key is stopped after identical fatal errors (rate/stop.py).
    Each attempt asks `find` for its connection key (an endpoint pool may pick
    another replica; a replica that refused is retried elsewhere at once)."""

    def wrap(call: Call) -> Call:
        async def stage(request: ModelRequest) -> ModelOutput:
            max_retries = request.config.max_retries
            if max_retries is None:
                max_retries = policy.max_retries
            waited = 0.0
            while True:
                key = request.key = find(request)
                guard = key.stop
                started = time.perf_counter()
                try:
                    if guard.error is not None and guard.holds():
                        raise guard.replay()
                    return await call(request)
                except Exception as ex:
                    decision = classify(api, ex)
                    wait = next_wait(policy, guard, request, ex, decision, started, max_retries)
                    if wait is None or waited + wait > policy.max_total_wait:
                        attach_history(ex, request.attempts)
                        raise
                    if request.target is not None and key.slots.down_until > key.clock():
                        wait = 0.0  # the replica refused: the next attempt goes to another
                    request.attempts[-1].wait = wait
                    waited += wait
                    lend = request.lend
                await backoff(sleep, wait, lend)

        return stage

    return wrap


def next_wait(
    policy: RetryPolicy,
    guard: FatalStop,
    request: ModelRequest,
    ex: Exception,
    decision: RetryDecision,
    started: float,
    max_retries: int,
) -> float | None:
    """Record a failed attempt in `request.attempts`; the wait before the next one,
    or None when there is no next one (not retryable, out of retries, key stopped)."""
    stopped = guard.failed(ex, decision, policy.fatal_stop)
    observe(decision)
    request.attempts.append(
        Attempt(
            len(request.attempts) + 1,
            describe(ex),
            decision.kind,
            time.perf_counter() - started,
            stopped=stopped,
        )
    )
    retries = len(request.attempts)
    if not decision.retryable or retries > max_retries:
        return None
    return policy.delay(retries, decision.retry_after)


async def backoff(sleep: Sleep, wait: float, lend: bool) -> None:
    """Sleep before a retry; when the failure left the key as it was, lend the
    caller's place meanwhile (`backoff_lender`). Not after a rate limit that slowed
    the key: the provider asked for less traffic, and a new sample in the
    sleeper's place would send more."""
    lender = backoff_lender.get() if lend else None
    if lender is None:
        await sleep(wait)
        return
    lender.lend()
    await sleep(wait)  # cancelled: the place stays lent, nothing to undo
    await lender.reclaim()


__all__ = [
    "AttemptTimeout",
    "BackoffLender",
    "Call",
    "ModelRequest",
    "Sleep",
    "Stage",
    "attempt",
    "backoff",
    "backoff_lender",
    "build_pipeline",
    "call_observer",
    "classify",
    "model_pipeline",
    "next_wait",
    "observe",
    "provider_call",
    "retry",
    "total_deadline",
]
