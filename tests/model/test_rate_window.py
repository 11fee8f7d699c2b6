"""The mirror of the provider's token window, alone and inside a key's admission."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Coroutine
from typing import Any

import pytest
from rate_calls import fail, ok

from gauge.model.rate.budgets import WINDOW_FILL, WINDOW_SLACK
from gauge.model.rate.keys import connection_key
from gauge.model.rate.window import TokenWindow


def test_a_send_waits_until_enough_old_sends_leave_the_window() -> None:
    window = TokenWindow(span=1.0)
    window.add(400, at=0.0)
    window.add(300, at=0.2)
    window.add(200, at=0.5)
    assert window.wait(100, share=1000, now=0.6) == 0.0  # 900 + 100 fits
    # 900 + 400 is 300 too many: the first send (400) must leave, at t = 1.0.
    assert window.wait(400, share=1000, now=0.6) == pytest.approx(0.4)
    # 900 + 800: the first two (700) must leave, at t = 1.2.
    assert window.wait(800, share=1000, now=0.6) == pytest.approx(0.6)
    assert window.wait(400, share=1000, now=1.0) == 0.0  # the first one is gone
    assert window.total == pytest.approx(500)


def test_an_empty_window_takes_a_send_larger_than_its_share() -> None:
    window = TokenWindow(span=1.0)
    assert window.wait(5000, share=1000, now=3.0) == 0.0


def test_replies_settle_their_entry_with_what_the_provider_counted() -> None:
    window = TokenWindow(span=1.0)
    first = window.add(600, at=0.0)  # reserved at most 600
    second = window.add(600, at=0.1)
    window.settle(first, 250, now=0.05)  # the reply used 250
    window.settle(second, 0, now=0.15)  # a 429: the provider counted nothing
    assert window.total == pytest.approx(250)
    window.settle(first, 999, now=1.5)  # already out of the window: ignored
    assert window.wait(0, share=1000, now=1.5) == 0.0 and window.total == 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


async def test_admission_keeps_every_second_under_the_window_share() -> None:
    clock = Clock()
    s = connection_key("p|u|k|window", 8, clock)
    s.configure(None, None, 60_000.0)  # 1000 tokens/s
    share = 1000 * WINDOW_FILL
    sent: list[tuple[float, int]] = []
    for size in (700, 250, 600, 300, 450):
        entry = await s.admit(size, clock.sleep)
        assert entry is not None
        sent.append((clock.now, size))
    for at, _ in sent:  # no one-second span ever held more than the share
        assert sum(n for t, n in sent if at - 1.0 < t <= at) <= share
    # The bucket paces 700 (50.68), 250 (50.93) and would send the 600 at 51.53;
    # the window still holds the first 700 until 51.68 (plus the slack for the
    # provider's later clock), so the 600 waits for it.
    assert [t for t, _ in sent[:3]] == pytest.approx([50.68, 50.93, 51.68 + WINDOW_SLACK])


async def test_a_rejected_send_leaves_the_window_and_a_reply_settles_it() -> None:
    clock = Clock()
    s = connection_key("p|u|k|window2", 8, clock)
    s.configure(None, None, 60_000.0)
    window = s.budgets.window
    assert window is not None
    entry = await s.admit(500, clock.sleep, most=900)  # counted at its most
    assert window.total == 900
    ok(s, 500, 300, False, None, entry=entry)
    assert window.total == 300
    other = await s.admit(500, clock.sleep)
    fail(s, "rate_limit", None, 500, None, entry=other)
    assert window.total == 300


class EventClock:
    """A fake clock that wakes its sleepers in time order (a discrete-event loop)."""

    def __init__(self) -> None:
        self.now = 50.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), id(fut), fut))
        await fut

    async def run(self, *coros: Coroutine[Any, Any, Any]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            for _ in range(20):  # let every task run until it sleeps or ends
                await asyncio.sleep(0)
            if self._sleepers:
                at, _, fut = heapq.heappop(self._sleepers)
                self.now = max(self.now, at)
                fut.set_result(None)
        for t in tasks:
            t.result()


async def test_a_pause_while_requests_wait_for_the_window_does_not_let_them_all_go() -> None:
    clock = EventClock()
    s = connection_key("p|u|k|window-pause", 8, clock)
    s.configure(None, None, 60_000.0)  # 1000 tokens/s, a window share of 990
    sent: list[tuple[float, int]] = []

    async def send(size: int, after: float) -> None:
        await clock.sleep(after)
        await s.admit(size, clock.sleep)
        sent.append((clock.now, size))

    async def rate_limited() -> None:
        # A 429 pauses the key just before the 900 leaves the window, while both
        # 500s wait for room: after the pause only one of them fits.
        await clock.sleep(1.885)
        s.hold(0.5, clock.now, "test")

    await clock.run(send(900, 0.0), send(500, 0.001), send(500, 0.002), rate_limited())
    assert [n for _, n in sent] == [900, 500, 500]
    for at, _ in sent:
        assert sum(n for t, n in sent if at - 1.0 < t <= at) <= 1000 * WINDOW_FILL
    assert sent[1][0] == pytest.approx(52.385)  # the first 500 goes when the pause ends
    assert sent[2][0] > sent[1][0] + 1.0  # the second waits for it to leave the window
