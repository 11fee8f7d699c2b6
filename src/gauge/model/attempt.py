"""The innermost stages: one attempt with its deadline, and the provider call.

The provider call is the only place that differs by operation: generate, score
(a batch of loglikelihood items), or stream. A stream's attempt ends when its
first delta arrives (so a stream that fails before any text is retried like
any call); the rest of it is read through `LiveStream`, which bounds each later
delta by `attempt_timeout` (and the whole stream by `timeout`) and, when the
stream ends, hands its final output to the stages that deferred their work
until then (the connection slot, rate accounting, cache store, usage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from gauge.errors import ModelError, ModelTimeout
from gauge.model.api import TRANSIENT, ModelAPI, RetryDecision
from gauge.model.call import unwrap
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import ChatCompletionChoice, ModelOutput, ModelUsage, StreamInfo
from gauge.model.request import Call, ModelRequest

log = logging.getLogger("gauge.model")

Finisher = Callable[[ModelOutput | None, BaseException | None], None]
"""Told once when a stream ends: (its final output, None) when it completed,
(None, the error) when it failed, (None, None) when the reader left early."""


class AttemptTimeout(ModelTimeout):
    """One attempt ran past `attempt_timeout` and was cancelled."""


def classify(api: ModelAPI, ex: BaseException) -> RetryDecision:
    """The provider's decision for `ex`; our own attempt timeouts are transient."""
    if isinstance(ex, AttemptTimeout):
        return TRANSIENT
    try:
        return api.classify_error(ex)
    except Exception:  # a broken classifier must not hide the real error
        return RetryDecision("fatal")


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
                if request.operation == "stream":
                    raise AttemptTimeout(
                        f"stream stalled past attempt_timeout={seconds:g}s before its first "
                        "delta and was cancelled"
                    ) from ex
                raise AttemptTimeout(
                    f"attempt exceeded attempt_timeout={seconds:g}s and was cancelled"
                ) from ex
        if output.time is None:
            output.time = time.perf_counter() - started
        return output

    return stage


def provider_call(api: ModelAPI) -> Call:
    """The innermost call: hand the request to the provider, by operation."""

    async def call(request: ModelRequest) -> ModelOutput:
        target = request.target or api  # an endpoint pool's replica, or the one server
        operation = request.operation
        if operation == "generate":
            result = await target.generate(
                request.input, request.tools, request.tool_choice, request.config
            )
            return unwrap(result, target.name)  # a provider may return (output, ModelCall)
        if operation == "stream":
            return await _open_stream(target, request)
        return await _score(target, request)

    return call


async def _score(api: ModelAPI, request: ModelRequest) -> ModelOutput:
    if request.operation == "loglikelihood":
        results = await api.loglikelihood(request.items, request.config)
    else:
        results = await api.loglikelihood_rolling(request.items, request.config)
    if len(results) != len(request.items):
        raise ModelError(
            f"provider {api.name!r} returned {len(results)} scores for "
            f"{len(request.items)} requests; this is a bug in the provider"
        )
    request.results = list(results)
    usage: ModelUsage | None = getattr(results, "usage", None)
    headers = getattr(results, "headers", None)
    return ModelOutput.model_construct(
        model=api.model_name, choices=[], usage=usage, headers=headers
    )


async def _open_stream(api: ModelAPI, request: ModelRequest) -> ModelOutput:
    deltas = api.stream(request.input, request.tools, request.tool_choice, request.config)
    live = LiveStream(api.model_name, deltas, request.config.attempt_timeout, request.deadline)
    try:
        await live.start()
    except BaseException:
        await live.close()
        raise
    if live.ended:  # no text at all: the stream is already whole
        output = live.output()
        output.headers = live.headers
        return output
    request.live = live
    return ModelOutput.model_construct(model=api.model_name, choices=[], headers=live.headers)


class LiveStream:
    """A provider stream from its first delta on."""

    def __init__(
        self,
        model: str,
        deltas: AsyncIterator[str | StreamInfo],
        attempt_timeout: float | None,
        deadline: float | None,
    ) -> None:
        self.model = model
        self.headers: Any = None
        self.usage: ModelUsage | None = None
        self.stop_reason: str | None = None
        self.first: str | None = None
        self.ended = False
        self._deltas = deltas
        self._per_delta = attempt_timeout
        self._deadline = deadline
        self._text: list[str] = []
        self._finishers: list[Finisher] = []

    def on_end(self, finisher: Finisher) -> None:
        """Call `finisher` when the stream ends (stages add theirs innermost first)."""
        self._finishers.append(finisher)

    async def start(self) -> None:
        """Read up to the first text delta (the attempt's deadline bounds this)."""
        self.first = await self._next()

    async def _next(self) -> str | None:
        """The next text delta (None at the end), keeping what StreamInfo items say."""
        deltas = self._deltas
        while True:
            try:
                item = await anext(deltas)
            except StopAsyncIteration:
                self.ended = True
                return None
            if isinstance(item, str):
                if item:
                    self._text.append(item)
                    return item
                continue
            self._take(item)

    def _take(self, info: StreamInfo) -> None:
        if info.headers is not None:
            self.headers = info.headers
        if info.usage is not None:
            self.usage = info.usage
        if info.stop_reason is not None:
            self.stop_reason = info.stop_reason

    async def deltas(self) -> AsyncGenerator[str, None]:
        """Yield the text deltas, the first one included, then settle the stream."""
        completed, error = False, None
        try:
            if self.first is not None:
                yield self.first
            while not self.ended:
                delta = await self._timed_next()
                if delta is None:
                    break
                yield delta
            completed = True
        except Exception as ex:
            error = ex
            raise
        finally:
            await self.close()
            self._finish(self.output() if completed else None, error)

    async def _timed_next(self) -> str | None:
        wait = self._per_delta
        if self._deadline is not None:
            left = max(0.0, self._deadline - time.monotonic())
            wait = left if wait is None else min(wait, left)
        if wait is None:
            return await self._next()
        try:
            async with asyncio.timeout(wait):
                return await self._next()
        except TimeoutError:
            raise AttemptTimeout(
                f"stream stalled past attempt_timeout/timeout ({wait:g}s waiting for a delta)"
            ) from None

    def output(self) -> ModelOutput:
        """The whole stream as one output (text, usage, stop reason)."""
        message = ChatMessageAssistant(
            content="".join(self._text), model=self.model, source="generate"
        )
        stop = self.stop_reason or "stop"
        choice = ChatCompletionChoice(message=message, stop_reason=stop)  # type: ignore[arg-type]
        return ModelOutput(model=self.model, choices=[choice], usage=self.usage)

    async def close(self) -> None:
        """Release the provider's stream (its connection) now, not at garbage collection."""
        if (aclose := getattr(self._deltas, "aclose", None)) is not None:
            with contextlib.suppress(Exception):
                await aclose()

    def _finish(self, output: ModelOutput | None, error: BaseException | None) -> None:
        finishers, self._finishers = self._finishers, []
        for finisher in finishers:
            try:
                finisher(output, error)
            except Exception:  # one stage's bookkeeping must not break the others'
                log.exception("settling a finished stream failed")
