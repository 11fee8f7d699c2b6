"""Concurrency limits per connection key.

`ConnectionLimiter` is a semaphore whose limit can change while it is in use (the
adaptive-concurrency controller in `gauge.model.rate` resizes it). A limiter
belongs to one event loop (its futures cannot cross loops): each connection key
has one per loop (`gauge.model.rate.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

DEFAULT_MAX = 256
"""How far a key's adaptive concurrency may grow unless the provider starts higher."""


class ConnectionLimiter:
    """At most `limit` holders at once; waiters are served first come, first served."""

    __slots__ = ("_waiters", "in_flight", "limit", "peak")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"connection limit must be >= 1, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        if self.in_flight < self.limit and not self._waiters:
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # We were handed a slot just as we were cancelled: pass it on.
                self.release()
            else:
                # A release may already have dropped our cancelled future from the queue.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give a slot back and hand it to the next waiter."""
        self.in_flight -= 1
        self._wake()

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return len(self._waiters)

    @property
    def saturated(self) -> bool:
        """Whether every slot is taken (demand meets or exceeds the limit)."""
        return self.in_flight >= self.limit or bool(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Change the limit; extra holders finish normally, new slots wake waiters."""
        if limit < 1:
            raise ValueError(f"connection limit must be >= 1, got {limit}")
        self.limit = limit
        self._wake()

    def _take(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)

    async def __aenter__(self) -> ConnectionLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
