"""The token window shared through Redis (the `room` script, shared_window.py): sends of
every process in one window, admitted while they fit, re-sized by their replies."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from redis_process import RedisServer

from gauge.model.rate.budgets import Budgets
from gauge.model.rate.shared_scripts import ROOM
from gauge.model.rate.shared_window import Reservation, SharedWindow

WINDOW, STATE = "gauge:v1:{t}:window", "gauge:v1:{t}:state"


class Room:
    """The script on a real Redis: one call per `ask`, with its answer."""

    def __init__(self, url: str, limit: float = 1000, span: float = 1.0) -> None:
        self.client = redis.Redis.from_url(url)
        self.script = self.client.register_script(ROOM)
        self.limit, self.span = limit, span

    def ask(
        self, members: list[str], news: list[str] | None = None, hold: str = ""
    ) -> tuple[int, float, float]:
        """(admitted, seconds until the first left out fits, Redis's time)."""
        news = news or []
        args: list[Any] = [self.span, self.limit, 60_000, len(members), len(news) // 3, hold]
        admitted, wait, now, _pause, held = self.script(
            keys=[WINDOW, STATE], args=[*args, *members, *news]
        )
        self.held = bool(held)
        return int(admitted), float(wait), float(now)

    def window(self) -> dict[str, float]:
        """member -> when it went."""
        return {m.decode(): s for m, s in self.client.zrange(WINDOW, 0, -1, withscores=True)}

    def total(self) -> int:
        return int(self.client.hget(STATE, "room") or 0)


@pytest.fixture
def room(redis_server: RedisServer) -> Room:
    return Room(redis_server.url)


def test_sends_are_admitted_in_order_while_they_fit(room: Room) -> None:
    admitted, wait, now = room.ask(["a|1|400", "b|1|400", "a|2|400", "a|3|10"])
    # The third would take the window to 1,200 of 1,000; the fourth waits behind it.
    assert admitted == 2
    # 200 too many: the first send (400) frees enough when it leaves the window.
    assert wait == pytest.approx(room.window()["a|1|400"] + 1.0 - now, abs=1e-3)
    assert 0.99 < wait <= 1.0
    assert room.total() == 800 and set(room.window()) == {"a|1|400", "b|1|400"}


def test_the_wait_counts_the_sends_that_must_leave_first(room: Room) -> None:
    room.ask([], ["", "x|1|300", "100.0"])  # dated long ago: not in the window
    assert room.window() == {} and room.total() == 0
    _, _, now = room.ask([])
    # Sent 0.6 s and 0.3 s ago: out of the window at +0.4 s and +0.7 s.
    room.ask([], ["", "x|2|300", f"{now - 0.6}", "", "x|3|300", f"{now - 0.3}"])
    admitted, wait, now2 = room.ask(["y|1|600"])
    # 600 + 600 is 200 too many: the first (300) frees enough.
    assert admitted == 0
    assert wait == pytest.approx(0.4 - (now2 - now), abs=0.01)
    admitted, wait, now3 = room.ask(["y|2|800"])
    # 400 too many: both must leave.
    assert admitted == 0
    assert wait == pytest.approx(0.7 - (now3 - now), abs=0.01)


def test_an_empty_window_takes_a_send_larger_than_the_limit(room: Room) -> None:
    assert room.ask(["a|1|5000"])[0] == 1  # else it could never go
    assert room.ask(["a|2|1"])[0] == 0
    assert room.total() == 5000


def test_news_resizes_redates_and_drops_sends(room: Room) -> None:
    assert room.ask(["a|1|700", "a|2|200"])[0] == 2
    sent = room.window()["a|1|700"]
    # The reply used 250 (counted at 700 until now), and the send went 5 ms later.
    news = ["a|1|700", "a|1|250", f"{sent + 0.005}"]
    # a|2 got a 429: the provider did not count it.
    news += ["a|2|200", "", "0"]
    admitted, _, _ = room.ask(["b|1|700"], news)
    assert admitted == 1
    window = room.window()
    assert window.keys() == {"a|1|250", "b|1|700"}
    assert window["a|1|250"] == pytest.approx(sent + 0.005, abs=1e-6)
    assert room.total() == 950
    # News about a send already gone changes nothing.
    room.ask([], ["a|9|100", "", "0"])
    assert room.total() == 950


def test_a_send_leaves_the_window_after_the_span(redis_server: RedisServer) -> None:
    room = Room(redis_server.url, limit=1000, span=0.2)
    assert room.ask(["a|1|900"])[0] == 1
    admitted, wait, _ = room.ask(["a|2|900"])
    assert admitted == 0 and 0.15 < wait <= 0.2
    time.sleep(wait + 0.01)
    assert room.ask(["a|2|900"])[0] == 1
    assert room.window().keys() == {"a|2|900"} and room.total() == 900


def test_room_is_held_only_far_below_the_budget(room: Room) -> None:
    room.ask(["a|1|300"], hold="a|2|100")
    assert room.held and room.total() == 400  # held room counts for everyone
    # Past half the window: no more is held (what is asked is still admitted).
    room.ask(["b|1|100"], hold="b|2|200")
    assert not room.held and room.total() == 500
    # Nor when a send asked for waits.
    room.ask(["b|3|600"], hold="b|4|10")
    assert not room.held and room.total() == 500
    # Given back with the news, once its sends are told one by one.
    _, _, now = room.ask([])
    room.ask([], ["", "a|5|40", f"{now}", "a|2|100", "", "0"])
    assert room.window().keys() == {"a|1|300", "b|1|100", "a|5|40"}
    assert room.total() == 440


async def test_requests_take_held_room_without_a_round_trip() -> None:
    calls: list[tuple[list[str], list[str], str]] = []

    async def room(
        members: list[str], limit: float, news: list[str], hold: str = ""
    ) -> tuple[int, float, bool]:
        calls.append((members, news, hold))
        return len(members), 0.0, True  # all admitted, and the hold granted

    pause = SimpleNamespace(until=0.0)
    key = SimpleNamespace(
        pid="p", live=True, offset=0.0, clock=time.monotonic, room=room, pause=pause
    )
    budgets = Budgets()
    budgets.configure(None, 60_000, time.monotonic())  # 1,000 tokens/s: holds of 99
    window = SharedWindow(key, budgets)  # type: ignore[arg-type]
    assert not window.take_held(10)  # nothing held yet: the line, one round trip
    assert await window.wait(10)
    [(members, _, hold)] = calls
    assert members == ["p|1|10"] and hold == "p|2|99"
    assert window.take_held(60) and window.take_held(30)  # no round trip
    assert not window.take_held(20)  # 9 left: given back, the next asks again
    assert len(calls) == 1
    news = window.news
    assert news[0::3] == ["", "", "p|2|99"]  # two sends told, the hold given back
    assert news[1::3] == ["p|3|60", "p|4|30", ""]
    # No round trip coming: the news goes alone, a little later (asking to hold again).
    await asyncio.sleep(0.1)
    assert len(calls) == 2 and calls[1][0] == [] and calls[1][1] == news
    assert calls[1][2] == "p|5|99" and window.news == []


def test_a_request_is_counted_at_the_most_its_reply_may_cost() -> None:
    budgets = Budgets()
    window = SharedWindow(SimpleNamespace(pid="p"), budgets)  # type: ignore[arg-type]
    # Before any reply: the prompt (8 chars: ~2 tokens) and all of max_tokens.
    first = Reservation(2, guess=2, max_tokens=400)
    assert window.size(first) == "p|1|402" and first.member == "p|1|402"
    # Echoes: each reply as long as its prompt (the calibration fits the line).
    for words in range(5, 65, 2):
        budgets.calibration.learn(words, words, words)
    assert window.size(Reservation(2, guess=50, max_tokens=400)) == "p|2|100"
    # No max_tokens: the reply still counts, at the fitted line (the calibration's
    # own `most` would count the prompt alone).
    assert budgets.calibration.most(50, None) == 50
    assert window.size(Reservation(2, guess=50, max_tokens=None)) == "p|3|100"
    # A plain count (a send with no reservation behind it) is taken as it is.
    assert window.size(7) == "p|4|7"
