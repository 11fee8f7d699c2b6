"""The mirror of the provider's token window, alone and inside a key's admission."""

from __future__ import annotations

import asyncio

import pytest

from gauge.model.rate.keys import WINDOW_FILL, key_state
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
    s = key_state("p|u|k|window", 8, clock)
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
    # the window still holds the first 700 until 51.68, so the 600 waits for it.
    assert [t for t, _ in sent[:3]] == pytest.approx([50.68, 50.93, 51.68])


async def test_a_rejected_send_leaves_the_window_and_a_reply_settles_it() -> None:
    clock = Clock()
    s = key_state("p|u|k|window2", 8, clock)
    s.configure(None, None, 60_000.0)
    window = s.window
    assert window is not None
    entry = await s.admit(500, clock.sleep, most=900)  # counted at its most
    assert window.total == 900
    s.succeeded(500, 300, False, None, entry=entry)
    assert window.total == 300
    other = await s.admit(500, clock.sleep)
    s.failed("rate_limit", None, 500, None, entry=other)
    assert window.total == 300
