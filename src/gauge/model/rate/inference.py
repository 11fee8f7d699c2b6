"""Rate limits without headers: measure the request rate a provider accepts from
its 429s, then probe upward (fast while the measure is unconfirmed, slowly once a
probe found the limit where it was).

Functions of one KeyState (keys.py), kept apart because this is the one part of
rate control that guesses: everything else follows headers or the user's budgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gauge.model.rate.keys import KeyState

RECENT = 1.0
"""Seconds of sends charged to a budget learned from headers, and the window a
request rate is measured over (the shortest window providers enforce their
per-minute limits over)."""
PROBE_EVERY = 30.0
"""Seconds without a rate limit before a confirmed inferred request rate is raised
by PROBE_STEP."""
PROBE_STEP = 1.05
FAST_PROBE_EVERY = 0.5
"""Least seconds between upward probes of an unconfirmed inferred rate (and at
least two round trips). A provider's window (RECENT) takes a while to fill at
the raised rate: from SAFETY of the limit, a first step overshoots within
(1 - SAFETY) / FAST_PROBE_FIRST of it, and its 429 must come back before the
next raise, or the overshoot compounds."""
FAST_PROBE_FIRST = 0.2
"""First upward step of an unconfirmed inferred rate; each later one doubles, as
TCP's slow start, up to FAST_PROBE_MOST."""
FAST_PROBE_MOST = 1.0
CONFIRM = 0.9
"""A rate limit that measures at least this fraction of the rate the key sent at
(the rate before the last probe, if the 429 answers it) confirms the limit:
probing slows to PROBE_EVERY."""
MIN_INFER = 4
"""Requests accepted in the last second needed before a rate is inferred from a 429."""
REMEASURE_FLOOR = 0.9
"""A later rate-limit episode starts the inferred rate again from at least this
fraction of the previous one, while the measure completes."""


def sent_ok(state: KeyState, sent_at: float, now: float) -> None:
    """Record a success sent at `sent_at`; it may complete a measurement in progress."""
    sent = state._sent
    sent.append(sent_at)
    while sent and sent[0] < now - 2 * RECENT:
        sent.popleft()
    mark = state._mark
    if mark is not None and mark - RECENT < sent_at <= mark:
        # A success sent just before the rate limit: the provider counted it in
        # the window that was full, so the measured rate grows by one.
        state._measured += 1
        rpm = state._measured * 60.0 / RECENT
        if (state.inferred_rpm or state._measured >= MIN_INFER) and rpm > (
            state.learned_rpm or 0.0
        ):
            set_inferred(state, rpm)


def infer_rate(state: KeyState, at: float, pause: float) -> None:
    """No limit headers: measure the request rate the provider accepted.

    The rate-limited request was sent at `at`, when the provider's window was
    full: the successes sent within RECENT before it are the limit. Those still
    in flight count as they come back (`_sent_ok`), so the measure only grows.
    Each later episode measures again; between episodes the rate is probed
    upward (see `_probe`). The first time, the new budget starts charged with
    the full window, unless the pause that follows (`pause`) outlasts it.
    An episode that comes while the key sends far below its budget is taken
    as a brief overload (a pause), unless another one follows within a window
    after it: then the limit really is lower.
    """
    measured = sum(1 for t in state._sent if at - RECENT < t <= at)
    # The provider's window must fill at the budget before a raise can show.
    state._probe_from = at + pause + RECENT
    rpm = max(measured, MIN_INFER) * 60.0 / RECENT
    learned = state.learned_rpm
    if state.inferred_rpm and learned is not None:
        worked = rate_at(state, at - RECENT - 2 * state._latency, learned)
        # Replies still on their way may raise the measure up to `most`.
        most = (measured + state.limiter.in_flight) * 60.0 / RECENT
        below = most < CONFIRM * worked
        if below and at >= state._grace_until:
            state._grace_until = at + pause + RECENT
            state._mark = None
            return
        state._mark, state._measured, state._probed_at = at, measured, at
        # The limit is where the key was sending (a probe overshot it, or the
        # budget was exact): probe slowly from now on. Otherwise (the limit is
        # lower than the key sent below its budget at, or this is a burst of
        # 429s, see BURST_HITS) the measure may be low: probe fast.
        state._step = FAST_PROBE_FIRST if below else 0.0
        state._raises.clear()
        # Until they come back, do not fall far below the rate that last worked,
        # nor above what they can bring (the key may have sent below its budget).
        set_inferred(state, max(rpm, min(worked * REMEASURE_FLOOR, most)))
        return
    state._mark, state._measured, state._probed_at = at, measured, at
    if measured >= MIN_INFER:
        had = state.rpm is not None
        state._step = FAST_PROBE_FIRST
        set_inferred(state, rpm)
        if not had and pause < RECENT and state.rpm is not None:
            state.rpm.drain_to(-state._measured, state.clock())


def set_inferred(state: KeyState, rpm: float) -> None:
    """Make `rpm` the key's inferred request budget."""
    state.learned_rpm = rpm
    state.inferred_rpm = True
    state._rebudget()


def probe(state: KeyState, now: float) -> None:
    """Raise an inferred request rate: it may be below what the provider accepts.

    A confirmed rate (a probe overshot and found the limit where it was) goes
    up by PROBE_STEP every PROBE_EVERY. An unconfirmed one (measured once, at a
    429 that came while the key sent below the limit or during a brief
    overload) goes up every couple of round trips without a 429 while requests
    wait for the budget, by steps that double: an under-estimate recovers in a
    few seconds, and the 429 of an overshoot measures the limit again.
    """
    learned = state.learned_rpm
    if learned is None:
        return
    step = state._step
    if not step:
        if now - state._probed_at >= PROBE_EVERY:
            raise_rate(state, now, learned, PROBE_STEP - 1.0)
        return
    every = max(FAST_PROBE_EVERY, 2 * state._latency)
    # Only while requests wait for the budget (else a higher one changes
    # nothing), no 429 came for a while and the key is not paused.
    if (
        now >= state._probe_from
        and now - state._limited_at >= every
        and now - state._bound_at <= every
        and not state.paused
    ):
        state._step = min(2 * step, FAST_PROBE_MOST)
        raise_rate(state, now, learned, step, every)


def raise_rate(
    state: KeyState, now: float, learned: float, step: float, every: float = 0.0
) -> None:
    """Raise the inferred rate by `step` (a fraction) and wake requests waiting for it."""
    state._probed_at = now
    state._probe_from = now + every
    raises = state._raises
    raises.append((now, learned))
    while raises and raises[0][0] < now - 2 * (RECENT + 2 * state._latency):
        raises.popleft()
    state.learned_rpm = learned * (1.0 + step)
    state._rebudget()
    if (raised := state._raised) is not None:
        state._raised = None
        raised.set_result(None)


def rate_at(state: KeyState, when: float, learned: float) -> float:
    """The inferred rate that was in force at `when` (before later probes took
    effect)."""
    for at, before in state._raises:
        if at > when:
            return before
    return learned
