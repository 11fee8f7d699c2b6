"""Rate limits without headers: measure the request rate a provider accepts from
its 429s, then probe upward (fast while the measure is unconfirmed, slowly once a
probe found the limit where it was).

One part of a connection key (keys.py), kept apart because this is the one part
of rate control that guesses: everything else follows headers or the user's budgets.
It sets the key's inferred request budget through `Budgets`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gauge.model.rate.budgets import RECENT
from gauge.model.rate.parts import KeyBudgets

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


LATENCY_WEIGHT = 0.1
"""Weight of each reply in the moving average of a round trip."""
BURST_HITS = 8
"""More 429s than this within one episode are a burst of overload (everything
rejected for a while), not a probe that crossed the limit by a step: the limit
is not confirmed."""


class RateInference:
    """The request rate a provider accepts, measured from 429s without headers."""

    __slots__ = (
        "_budgets",
        "_episode_hits",
        "_grace_until",
        "_in_flight",
        "_limited_at",
        "_mark",
        "_measured",
        "_paused",
        "_probe_from",
        "_probed_at",
        "_raises",
        "_sent",
        "_step",
        "latency",
    )

    def __init__(
        self, budgets: KeyBudgets, in_flight: Callable[[], int], paused: Callable[[], bool]
    ) -> None:
        self._budgets = budgets
        self._in_flight = in_flight
        self._paused = paused
        self._sent: deque[float] = deque()
        """Send times of recent successes (the provider counted them in its window)."""
        self._mark: float | None = None
        """Send time of the rate-limited request that started the current measurement."""
        self._measured = 0
        self._step = 0.0
        """Next upward step of an unconfirmed inferred rate (0: confirmed, probe slowly)."""
        self._probe_from = 0.0
        """No fast probe before this time (one window after a rate limit's pause)."""
        self._probed_at = 0.0
        self._raises: deque[tuple[float, float]] = deque()
        """(when, rate before) of the recent probes."""
        self._limited_at = float("-inf")
        """When the last rate limit came back."""
        self._grace_until = float("-inf")
        """An episode before this time, soon after one taken as a brief overload,
        measures the limit (the key's rate really was over it)."""
        self._episode_hits = 0
        """429s since the current rate-limit episode began."""
        self.latency = 0.0
        """Moving average of a successful attempt's round trip."""

    @property
    def probing(self) -> bool:
        """Whether an unconfirmed inferred rate is being probed upward fast."""
        return self._step != 0.0

    def forget(self) -> None:
        """Headers stated the limit: stop measuring."""
        self._mark = None

    def succeeded(self, sent_at: float, now: float) -> None:
        """A success sent at `sent_at` came back at `now`."""
        took = now - sent_at
        latency = self.latency
        self.latency = latency + LATENCY_WEIGHT * (took - latency) if latency else took
        self._sent_ok(sent_at, now)

    def limited(self, now: float, episode: bool) -> None:
        """A 429 came back at `now` (`episode`: the first of a new rate-limit episode)."""
        self._limited_at = now
        if episode:
            self._episode_hits = 0
        self._episode_hits += 1
        if self._episode_hits > BURST_HITS and self._budgets.inferred_rpm and not self._step:
            self._step = FAST_PROBE_FIRST

    def _sent_ok(self, sent_at: float, now: float) -> None:
        """Record a success sent at `sent_at`; it may complete a measurement in progress."""
        sent = self._sent
        sent.append(sent_at)
        while sent and sent[0] < now - 2 * RECENT:
            sent.popleft()
        mark = self._mark
        if mark is not None and mark - RECENT < sent_at <= mark:
            # A success sent just before the rate limit: the provider counted it in
            # the window that was full, so the measured rate grows by one.
            self._measured += 1
            rpm = self._measured * 60.0 / RECENT
            if (self._budgets.inferred_rpm or self._measured >= MIN_INFER) and rpm > (
                self._budgets.learned_rpm or 0.0
            ):
                self._budgets.set_inferred(rpm, now)

    def infer(self, at: float, pause: float, now: float) -> None:
        """No limit headers: measure the request rate the provider accepted.

        The rate-limited request was sent at `at`, when the provider's window was
        full: the successes sent within RECENT before it are the limit. Those still
        in flight count as they come back (`_sent_ok`), so the measure only grows.
        Each later episode measures again; between episodes the rate is probed
        upward (see `probe`). The first time, the new budget starts charged with
        the full window, unless the pause that follows (`pause`) outlasts it.
        An episode that comes while the key sends far below its budget is taken
        as a brief overload (a pause), unless another one follows within a window
        after it: then the limit really is lower.
        """
        measured = sum(1 for t in self._sent if at - RECENT < t <= at)
        # The provider's window must fill at the budget before a raise can show.
        self._probe_from = at + pause + RECENT
        rpm = max(measured, MIN_INFER) * 60.0 / RECENT
        learned = self._budgets.learned_rpm
        if self._budgets.inferred_rpm and learned is not None:
            worked = self._rate_at(at - RECENT - 2 * self.latency, learned)
            # Replies still on their way may raise the measure up to `most`.
            most = (measured + self._in_flight()) * 60.0 / RECENT
            below = most < CONFIRM * worked
            if below and at >= self._grace_until:
                self._grace_until = at + pause + RECENT
                self._mark = None
                return
            self._mark, self._measured, self._probed_at = at, measured, at
            # The limit is where the key was sending (a probe overshot it, or the
            # budget was exact): probe slowly from now on. Otherwise (the limit is
            # lower than the key sent below its budget at, or this is a burst of
            # 429s, see BURST_HITS) the measure may be low: probe fast.
            self._step = FAST_PROBE_FIRST if below else 0.0
            self._raises.clear()
            # Until they come back, do not fall far below the rate that last worked,
            # nor above what they can bring (the key may have sent below its budget).
            self._budgets.set_inferred(max(rpm, min(worked * REMEASURE_FLOOR, most)), now)
            return
        self._mark, self._measured, self._probed_at = at, measured, at
        if measured >= MIN_INFER:
            had = self._budgets.rpm is not None
            self._step = FAST_PROBE_FIRST
            self._budgets.set_inferred(rpm, now)
            if not had and pause < RECENT and self._budgets.rpm is not None:
                self._budgets.rpm.drain_to(-self._measured, now)

    def probe(self, now: float) -> None:
        """Raise an inferred request rate: it may be below what the provider accepts.

        A confirmed rate (a probe overshot and found the limit where it was) goes
        up by PROBE_STEP every PROBE_EVERY. An unconfirmed one (measured once, at a
        429 that came while the key sent below the limit or during a brief
        overload) goes up every couple of round trips without a 429 while requests
        wait for the budget, by steps that double: an under-estimate recovers in a
        few seconds, and the 429 of an overshoot measures the limit again.
        """
        learned = self._budgets.learned_rpm
        if learned is None:
            return
        step = self._step
        if not step:
            if now - self._probed_at >= PROBE_EVERY:
                self._raise_rate(now, learned, PROBE_STEP - 1.0)
            return
        every = max(FAST_PROBE_EVERY, 2 * self.latency)
        # Only while requests wait for the budget (else a higher one changes
        # nothing), no 429 came for a while and the key is not paused.
        if (
            now >= self._probe_from
            and now - self._limited_at >= every
            and now - self._budgets.bound_at <= every
            and not self._paused()
        ):
            self._step = min(2 * step, FAST_PROBE_MOST)
            self._raise_rate(now, learned, step, every)

    def _raise_rate(self, now: float, learned: float, step: float, every: float = 0.0) -> None:
        """Raise the inferred rate by `step` (a fraction) and wake requests waiting for it."""
        self._probed_at = now
        self._probe_from = now + every
        raises = self._raises
        raises.append((now, learned))
        while raises and raises[0][0] < now - 2 * (RECENT + 2 * self.latency):
            raises.popleft()
        self._budgets.raise_inferred(learned * (1.0 + step), now)

    def _rate_at(self, when: float, learned: float) -> float:
        """The inferred rate that was in force at `when` (before later probes took
        effect)."""
        for at, before in self._raises:
            if at > when:
                return before
        return learned
