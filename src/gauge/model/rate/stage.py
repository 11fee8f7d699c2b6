"""The connection-key stage: pause, budgets and a connection slot per attempt.

    ... retry -> key stage -> attempt -> provider

It sits inside the retry stage, so a backoff sleep holds no slot, and it waits
for the key-wide pause and the RPM/TPM budgets *before* taking a slot, so a
paused or budget-bound key holds no slots either. After the attempt it tells
the key what happened, with the response headers that came back on the output
(or on the error). A stream holds its slot until it ends: its usage is charged
then (attempt.LiveStream calls back).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from gauge.model.api import ModelAPI
from gauge.model.attempt import classify
from gauge.model.output import ModelOutput
from gauge.model.pool import refused
from gauge.model.rate.keys import ConnectionKey, Ticket, estimate_tokens
from gauge.model.request import Call, ModelRequest, Sleep, Stage


def key_stage(api: ModelAPI, sleep: Sleep) -> Stage:
    """Hold one of the key's (adaptive) slots per attempt, within its budgets."""

    def wrap(call: Call) -> Call:
        async def stage(request: ModelRequest) -> ModelOutput:
            key = request.key
            assert key is not None  # the retry stage sets it
            config = request.config
            key.configure(config.max_connections, config.rpm, config.tpm)
            limiter = key.slots.limiter
            if key.gated:
                ticket = await _enter(key, request, sleep)
            else:  # the common case, kept free of extra awaits
                ticket = Ticket()
                await limiter.acquire()
                if key.gated:  # a pause or budget began while we queued
                    limiter.release()
                    ticket = await _enter(key, request, sleep)
            ticket.sent_at = sent_at = key.clock()
            if ticket.entry is not None:
                # The provider counts the request from when it arrives, not from when
                # the budget let it go (it may have queued for a slot since).
                ticket.entry[0] = sent_at
            try:
                output = await call(request)
            except Exception as ex:
                limiter.release()
                request.lend = _failed(key, api, ex, ticket)
                raise
            except BaseException:  # cancelled: nothing was learned
                limiter.release()
                raise
            live = request.live
            if live is not None and not live.ended:
                live.on_end(functools.partial(_stream_ended, key, api, ticket, output.headers))
                return output
            saturated = limiter.saturated
            limiter.release()
            key.succeeded(ticket, output.usage, output.headers, saturated)
            return output

        return stage

    return wrap


async def _enter(key: ConnectionKey, request: ModelRequest, sleep: Sleep) -> Ticket:
    """Pass the pause and budgets, then take a slot."""
    limiter = key.slots.limiter
    ticket = Ticket()
    most: Callable[[], int] | None = None
    admitted = False
    waited = -1.0  # the pause deadline already waited out
    while True:
        if key.gated:
            if not admitted:
                if key.budgets.tpm is not None:
                    ticket.guess = estimate_tokens([m.text for m in request.input], None)
                    max_tokens = request.config.max_tokens
                    ticket.tokens = key.budgets.reservation(ticket.guess, max_tokens)
                    most = functools.partial(key.budgets.most, ticket.guess, max_tokens)
                ticket.entry = await key.admit(ticket.tokens, sleep, most)
                admitted = True
            else:
                await key.wait_pause(sleep)
            waited = key.pause.until
        try:
            await limiter.acquire()
        except BaseException:
            if admitted:
                key.refund(ticket.tokens, requests=True)
            raise
        if not key.gated:
            return ticket
        if admitted and (key.pause.until <= waited or not key.paused):
            return ticket
        # A budget was learned or a new pause began while we queued for the slot:
        # give the slot back and go through them first.
        limiter.release()


def _failed(key: ConnectionKey, api: ModelAPI, ex: BaseException, ticket: Ticket) -> bool:
    """Tell the key; whether the failure left the key as it was."""
    decision = classify(api, ex)
    if decision.kind == "transient" and refused(ex):
        key.slots.take_out(key.clock())  # an endpoint pool sends elsewhere meanwhile
    headers = getattr(ex, "headers", None)
    if not hasattr(headers, "get"):
        headers = None
    return key.failed(ticket, decision, headers)


def _stream_ended(
    key: ConnectionKey,
    api: ModelAPI,
    ticket: Ticket,
    headers: Mapping[str, str] | None,
    output: ModelOutput | None,
    error: BaseException | None,
) -> None:
    """A stream that held its slot since its first delta has ended."""
    limiter = key.slots.limiter
    saturated = limiter.saturated
    limiter.release()
    if output is not None:
        key.succeeded(ticket, output.usage, headers, saturated)
    elif error is not None:
        _failed(key, api, error, ticket)


__all__ = ["key_stage"]
