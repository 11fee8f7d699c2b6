"""The rate-control pipeline stage: budgets, pause and a connection slot per attempt.

    ... retry -> rate_control -> attempt -> provider

It sits inside the retry stage, so a backoff sleep holds no slot, and it waits
for the key-wide pause and the RPM/TPM budgets *before* taking a slot, so a
paused or budget-bound key holds no slots either. Around the attempt it listens
for the response headers (see sink.py) to learn the provider's limits.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping

from gauge.model.api import ModelAPI
from gauge.model.output import ModelOutput
from gauge.model.pipeline import Call, ModelRequest, Sleep, Stage, classify
from gauge.model.rate.keys import Clock, KeyState, estimate_tokens, key_state
from gauge.model.rate.sink import response_headers
from gauge.model.rate.window import Entry


def rate_control(api: ModelAPI, sleep: Sleep, clock: Clock = time.monotonic) -> Stage:
    """Hold one of the key's (adaptive) slots per attempt, within its budgets."""
    key = api.connection_key()
    start = api.max_connections()
    most = api.max_connections_limit()

    def wrap(call: Call) -> Call:
        async def stage(request: ModelRequest) -> ModelOutput:
            state = key_state(key, start, clock, most)
            config = request.config
            state.configure(config.max_connections, config.rpm, config.tpm)
            limiter = state.limiter
            entry: Entry | None = None
            if state.gated:
                tokens, guess, entry = await _enter(state, request, sleep)
            else:  # the common case, kept free of extra awaits
                tokens = guess = 0
                await limiter.acquire()
                if state.gated:  # a pause or budget began while we queued
                    limiter.release()
                    tokens, guess, entry = await _enter(state, request, sleep)
            sink: list[Mapping[str, str]] = []
            token = response_headers.set(sink)
            sent_at = clock()
            if entry is not None:
                # The provider counts the request from when it arrives, not from when
                # the budget let it go (it may have queued for a slot since).
                entry[0] = sent_at
            try:
                output = await call(request)
            except Exception as ex:
                response_headers.reset(token)
                limiter.release()
                _failed(state, api, ex, tokens, sink, sent_at, entry)
                raise
            except BaseException:  # cancelled: nothing was learned
                response_headers.reset(token)
                limiter.release()
                raise
            response_headers.reset(token)
            saturated = limiter.saturated
            limiter.release()
            usage = output.usage
            state.succeeded(
                tokens,
                None if usage is None else usage.total_tokens,
                saturated,
                sink[-1] if sink else None,
                sent_at,
                usage,
                guess,
                entry,
            )
            return output

        return stage

    return wrap


async def _enter(
    state: KeyState, request: ModelRequest, sleep: Sleep
) -> tuple[int, int, Entry | None]:
    """Pass the pause and budgets, then take a slot.

    Returns the tokens reserved, the plain estimate of the prompt's tokens (which
    the key's calibration learns from) and the send's entry in the token window.
    """
    limiter = state.limiter
    tokens = guess = 0
    most: Callable[[], int] | None = None
    entry: Entry | None = None
    admitted = False
    waited = -1.0  # the pause deadline already waited out
    while True:
        if state.gated:
            if not admitted:
                if state.tpm is not None:
                    guess = estimate_tokens([m.text for m in request.input], None)
                    max_tokens = request.config.max_tokens
                    tokens = state.reservation(guess, max_tokens)
                    most = functools.partial(state.most, guess, max_tokens)
                entry = await state.admit(tokens, sleep, most)
                admitted = True
            else:
                await state.wait_pause(sleep)
            waited = state.paused_until
        try:
            await limiter.acquire()
        except BaseException:
            if admitted:
                state.refund(tokens, requests=True)
            raise
        if not state.gated:
            return tokens, guess, entry
        if admitted and (state.paused_until <= waited or not state.paused):
            return tokens, guess, entry
        # A budget was learned or a new pause began while we queued for the slot:
        # give the slot back and go through them first.
        limiter.release()


def _failed(
    state: KeyState,
    api: ModelAPI,
    ex: Exception,
    tokens: int,
    sink: list[Mapping[str, str]],
    sent_at: float,
    entry: Entry | None,
) -> None:
    decision = classify(api, ex)
    headers = sink[-1] if sink else getattr(ex, "headers", None)
    if not hasattr(headers, "get"):
        headers = None
    state.failed(decision.kind, decision.retry_after, tokens, headers, sent_at, entry)
