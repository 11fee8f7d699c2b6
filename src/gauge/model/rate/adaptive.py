"""Adaptive concurrency: find how many requests a key can have in flight.

The controller is AIMD with a slow start, as TCP congestion control:

- slow start: while no rate limit has been seen, every successful attempt that
  finished while the key was saturated (callers waiting for a slot) adds
  `SLOW_START_STEP` slot, so the limit doubles every round trip (as TCP's; a
  faster start overshoots a rate limit by more, and every request of the wave
  that crosses it comes back 429);
- after a rate limit, growth is additive: one slot per `limit` saturated
  successes (one per round trip);
- a rate limit cuts the limit by `DECREASE` (halves it), at most once per
  `cooldown` seconds, because one burst over the limit comes back as many 429s
  and should count as one signal.

A limit the user sets (`max_connections`) is fixed: the controller never moves it.
The controller is plain arithmetic on a clock value passed in, so tests drive it
deterministically.
"""

from __future__ import annotations

from gauge.model.limits import DEFAULT_MAX

DECREASE = 0.5
SLOW_START_STEP = 1
COOLDOWN = 1.0


class AdaptiveConcurrency:
    """The concurrency limit of one connection key."""

    __slots__ = (
        "_credit",
        "cooldown",
        "fixed",
        "hold_until",
        "limit",
        "maximum",
        "minimum",
        "slow_start",
    )

    def __init__(
        self,
        start: int,
        minimum: int = 1,
        maximum: int = DEFAULT_MAX,
        fixed: int | None = None,
        cooldown: float = COOLDOWN,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = max(maximum, start)
        self.limit = max(minimum, start)
        self.fixed = False
        self.cooldown = cooldown
        self._credit = 0
        self.hold_until = float("-inf")
        self.slow_start = True
        """Until the first rate limit: grow by SLOW_START_STEP per saturated success."""
        if fixed is not None:
            self.set_fixed(fixed)

    def set_fixed(self, limit: int | None) -> None:
        """Pin the limit to `limit` (the user's max_connections); None resumes adapting."""
        if limit is None:
            self.fixed = False
            return
        if limit < 1:
            raise ValueError(f"max_connections must be >= 1, got {limit}")
        self.fixed = True
        self.limit = limit

    def on_success(self, saturated: bool) -> int:
        """Record a successful attempt; grow when the key was using every slot."""
        if self.fixed or not saturated or self.limit >= self.maximum:
            return self.limit
        if self.slow_start:
            self.limit = min(self.maximum, self.limit + SLOW_START_STEP)
        else:
            self._credit += 1
            if self._credit >= self.limit:
                self._credit = 0
                self.limit += 1
        return self.limit

    def on_rate_limit(self, now: float) -> int:
        """Record a rate-limited attempt at time `now`; cut the limit once per cooldown."""
        if self.fixed or now < self.hold_until:
            return self.limit
        self.slow_start = False
        self._credit = 0
        self.limit = max(self.minimum, int(self.limit * DECREASE))
        self.hold_until = now + self.cooldown
        return self.limit
