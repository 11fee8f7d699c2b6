"""A connection key's connection slots: a resizable limiter driven by the
adaptive controller (adaptive.py), or fixed at the user's `max_connections`."""

from __future__ import annotations

from gauge.model.limits import ConnectionLimiter
from gauge.model.rate.adaptive import AdaptiveConcurrency
from gauge.model.rate.parts import Limiter

OUT_FIRST = 1.0
"""Seconds a replica that refused a connection stays out of its endpoint pool."""
OUT_MOST = 30.0


class Slots:
    """How many attempts of one key may be in flight, and who holds them."""

    __slots__ = ("_fixed", "_out_for", "controller", "down_until", "limiter")

    def __init__(self, start: int, maximum: int) -> None:
        self.controller = AdaptiveConcurrency(start, maximum=maximum)
        self.limiter: Limiter = ConnectionLimiter(self.controller.limit)
        self._fixed: int | None = None
        self.down_until = 0.0
        """An endpoint pool leaves this replica out until then (it refused connections)."""
        self._out_for = 0.0

    @property
    def demand(self) -> int:
        """Attempts holding a slot or waiting for one (what an endpoint pool balances)."""
        return self.limiter.in_flight + getattr(self.limiter, "waiting", 0)

    def take_out(self, now: float) -> None:
        """The server refused a connection: leave it out for 1 s, doubling to 30 s."""
        self._out_for = min(OUT_MOST, max(OUT_FIRST, 2 * self._out_for))
        self.down_until = now + self._out_for

    @property
    def in_flight(self) -> int:
        """Attempts holding a slot now."""
        return self.limiter.in_flight

    @property
    def limit(self) -> int:
        """Slots there are now."""
        return self.limiter.limit

    def fix(self, max_connections: int | None) -> None:
        """Pin the limit to the user's `max_connections` (None: adapt)."""
        if max_connections != self._fixed:
            self._fixed = max_connections
            self.controller.set_fixed(max_connections)
            self.limiter.set_limit(self.controller.limit)

    def grow(self, saturated: bool) -> None:
        """A success: the controller may add a slot (and a replica left out is back)."""
        if self._out_for:
            self._out_for = self.down_until = 0.0
        limit = self.controller.on_success(saturated)
        if limit != self.limiter.limit:
            self.limiter.set_limit(limit)

    def cut(self, now: float) -> tuple[int, int] | None:
        """A rate limit: the controller may cut the slots; (before, after) when it did."""
        before = self.limiter.limit
        limit = self.controller.on_rate_limit(now)
        if limit == before:
            return None
        self.limiter.set_limit(limit)
        return before, limit

    def episode(self, now: float) -> bool:
        """Whether a rate limit at `now` starts a new episode (past the cooldown)."""
        return now >= self.controller.hold_until

    def cool(self, now: float) -> None:
        """Start a cooldown: the 429s of the next `cooldown` seconds are one episode."""
        self.controller.hold_until = now + self.controller.cooldown
