"""A connection key's key-wide pause: every new attempt waits until it is over.

A Retry-After on a 429, or headers saying a budget is used up, hold the whole
key, not only the request that was told: the others would meet the same wall.
Attempts already in flight finish normally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[object]]


class Pause:
    """When the key's pause ends (0: no pause) and how many pauses there were."""

    __slots__ = ("count", "until")

    def __init__(self) -> None:
        self.until = 0.0
        self.count = 0

    def active(self, now: float) -> bool:
        """Whether a pause is in force at `now`."""
        return self.until > 0.0 and self.until > now

    def extend(self, until: float) -> bool:
        """Hold the key until `until`; False when a longer pause already holds it."""
        if until <= self.until:
            return False
        self.until = until
        self.count += 1
        return True

    async def wait(self, sleep: Sleep, clock: Callable[[], float]) -> None:
        """Wait until the pause (if any) is over."""
        while self.until > 0.0:
            until = self.until
            left = until - clock()
            if left <= 0:
                self.until = 0.0
                return
            await sleep(left)
            # Wait again only if the pause was extended meanwhile (never spin on a
            # sleep that returned early).
            if self.until <= until:
                return
