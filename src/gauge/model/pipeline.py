"""The generate pipeline: stages with one signature, composed once per Model.

    total deadline -> cache -> retry -> rate control -> attempt (deadline, timing) -> provider

The first stage listed is the outermost (Model builds the list). Retry wraps rate
control (`gauge.model.rate.stage`: key-wide pause, RPM/TPM budgets, adaptive
connection slot), so backoff sleeps and budget waits never hold a connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from gauge.errors import ModelTimeout
from gauge.model.api import TRANSIENT, ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.retry import (
    Attempt,
    FatalStop,
    RetryPolicy,
    attach_history,
    describe,
    fatal_stop,
)
from gauge.model.tools import ToolChoice, ToolInfo


@dataclass(slots=True)
class ModelRequest:
    """One prepared call travelling through the pipeline."""

    input: list[ChatMessage]
    tools: list[ToolInfo]
    tool_choice: ToolChoice
    config: GenerateConfig
    attempts: list[Attempt] = field(default_factory=list)
    """Failed attempts so far (the retry stage fills it)."""


Call = Callable[[ModelRequest], Awaitable[ModelOutput]]
Stage = Callable[[Call], Call]
Sleep = Callable[[float], Awaitable[object]]

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

The eval runner sets one per sample: a sample sleeping in backoff after a
transient failure gives its place among the samples in flight to the next one, so
`max_connections` samples keep sending while some wait (the sleep already holds
no connection slot). A sample waiting out a rate limit keeps its place.
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


def provider_call(api: ModelAPI) -> Call:
    """The innermost call: hand the request to the provider."""

    async def call(request: ModelRequest) -> ModelOutput:
        return await api.generate(request.input, request.tools, request.tool_choice, request.config)

    return call


def total_deadline(call: Call) -> Call:
    """Enforce `config.timeout` over all attempts and waits."""

    async def stage(request: ModelRequest) -> ModelOutput:
        seconds = request.config.timeout
        if seconds is None:
            return await call(request)
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


def retry(api: ModelAPI, policy: RetryPolicy, sleep: Sleep) -> Stage:
    """Retry rate-limit and transient failures, bounded by count and total wait;
    stop a key after `policy.fatal_stop` identical fatal errors (see retry.FatalStop)."""
    key = api.connection_key()

    def wrap(call: Call) -> Call:
        async def stage(request: ModelRequest) -> ModelOutput:
            max_retries = request.config.max_retries
            if max_retries is None:
                max_retries = policy.max_retries
            guard = fatal_stop(key)
            waited = 0.0
            while True:
                started = time.perf_counter()
                try:
                    if guard.error is not None and guard.holds():
                        raise guard.replay()
                    output = await call(request)
                    if guard.count:
                        guard.succeeded()
                    return output
                except Exception as ex:
                    decision = classify(api, ex)
                    wait = next_wait(policy, guard, request, ex, decision, started, max_retries)
                    if wait is None or waited + wait > policy.max_total_wait:
                        attach_history(ex, request.attempts)
                        raise
                    request.attempts[-1].wait = wait
                    waited += wait
                    lend = decision.kind == "transient"
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
    """Sleep before a retry; after a transient failure, lend the caller's place
    meanwhile (`backoff_lender`). Not after a rate limit: the provider asked for
    less traffic, and a new sample in the sleeper's place would send more."""
    lender = backoff_lender.get() if lend else None
    if lender is None:
        await sleep(wait)
        return
    lender.lend()
    await sleep(wait)  # cancelled: the place stays lent, nothing to undo
    await lender.reclaim()


def classify(api: ModelAPI, ex: BaseException) -> RetryDecision:
    """The provider's decision for `ex`; our own attempt timeouts are transient."""
    if isinstance(ex, AttemptTimeout):
        return TRANSIENT
    try:
        return api.classify_error(ex)
    except Exception:  # a broken classifier must not hide the real error
        return RetryDecision("fatal")


class AttemptTimeout(ModelTimeout):
    """One attempt ran past `attempt_timeout` and was cancelled."""


def attempt(call: Call) -> Call:
    """Time the attempt and cancel it at `config.attempt_timeout`."""

    async def stage(request: ModelRequest) -> ModelOutput:
        seconds = request.config.attempt_timeout
        started = time.perf_counter()
        if seconds is None:
            output = await call(request)
        else:
            deadline = asyncio.timeout(seconds)
            try:
                async with deadline:
                    output = await call(request)
            except TimeoutError as ex:
                if not deadline.expired():
                    raise
                raise AttemptTimeout(
                    f"attempt exceeded attempt_timeout={seconds:g}s and was cancelled"
                ) from ex
        if output.time is None:
            output.time = time.perf_counter() - started
        return output

    return stage
