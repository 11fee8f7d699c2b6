"""The token budget of a connection key shared by every process: one window of sends in Redis.

A provider enforces a tokens-per-minute limit over short windows: it rejects a
request that would take the tokens of the last second past limit / 60. In
process, a bucket paces the average and a mirror of that window (window.py)
holds back what would cross it. A shared schedule of grants can only pace the
average: a request goes when its tokens are earned, so a second can hold one
request more than the rate, and the schedule had to run below the budget by the
largest request (6 % of the tpm bench) to keep the 429s away.

So the window itself is in Redis (the `room` script, shared_scripts.py): every
process's sends of the last RECENT seconds (plus WINDOW_SLACK), each counted at
the most it may cost (calibration.py) until its reply says what it used, dated
by when it went. A request goes when it fits under the budget's share of the
window (WINDOW_FILL, as in process); when it does not, Redis answers when enough
will have expired. A process's requests wait in one line served by one task: a
round trip asks room for every request in line (up to BATCH), so a process pays
one round trip per batch of sends, not one per request, and its news (a send
re-dated and re-sized from its reply, dropped after a 429) rides along.

Far below the budget (the window less than half full), a round trip also lets the
process hold HOLD of the window for HOLD_LIFE seconds, one member counted for
every other process: its requests then take their room from it with no round
trip and no wait in line (each is still told to Redis as its own send, with the
news). What is held is given back when it runs out or its time is up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, Self

from gauge.model.rate.budgets import RECENT, WINDOW_FILL, WINDOW_SLACK

if TYPE_CHECKING:
    from gauge.model.rate.budgets import Budgets
    from gauge.model.rate.shared_key import SharedKey

SPAN = RECENT + WINDOW_SLACK
"""Seconds a send stays in the shared window (the provider's window, and the slack for
its clock starting when the request arrives, a little after the send was dated)."""
BATCH = 64
"""Most requests asked room for in one round trip."""
RECHECK = 0.25
"""Most seconds before asking again when the head of the line does not fit: room can
free early (a reply used less than its send was counted at, a 429 dropped a send)."""
LEAST_WAIT = 0.001
UNBOUNDED = 1 << 40
"""max_tokens for a request that set none, to ask the calibration what its reply costs."""
HOLD = 0.1
"""Share of the window a process may hold ahead of its sends..."""
HOLD_LIFE = 0.25
"""...for this many seconds (its sends are dated on their own, so none goes late)."""
FLUSH_AFTER = 0.02
"""Seconds news waits for a round trip to ride along before it is sent alone."""


class Reservation(int):
    """Tokens reserved for a request, with what they were estimated from.

    The window counts a request at the most it may cost when its turn comes
    (`SharedWindow.size`), from what the replies taught meanwhile: 200 requests
    queued at the start of a run were sized with all of `max_tokens`. `member` is
    its send in Redis until its reply (or a 429) settles it.
    """

    guess: int
    max_tokens: int | None
    taken: int | None
    """What the window counted the request at."""
    member: str | None

    def __new__(cls, tokens: int, guess: int, max_tokens: int | None) -> Self:
        self = super().__new__(cls, tokens)
        self.guess, self.max_tokens = guess, max_tokens
        self.taken = self.member = None
        return self


class SharedWindow:
    """This process's line for the shared token window, and the news Redis has yet to hear."""

    __slots__ = (
        "_budgets",
        "_flushes",
        "_held",
        "_hold",
        "_hold_until",
        "_key",
        "_seq",
        "line",
        "news",
        "serving",
    )

    def __init__(self, key: SharedKey, budgets: Budgets) -> None:
        self._key = key
        self._budgets = budgets
        self.line: deque[tuple[int, asyncio.Future[bool]]] = deque()
        """(its tokens, whether it went by the shared window) of each waiting request."""
        self.serving: asyncio.Future[None] | None = None
        self.news: list[str] = []
        """(old member or "", new member or "", when the new one went) triples."""
        self._seq = 0
        self._flushes: set[asyncio.Future[Any]] = set()
        self._hold: str | None = None
        """The member of the room this process holds (None: none)..."""
        self._held = 0
        """...the tokens of it not yet taken, and until when (this clock) it may be."""
        self._hold_until = 0.0

    def limit(self) -> float | None:
        """Tokens the window may hold (None: no token budget now)."""
        tpm = self._budgets.tpm
        return None if tpm is None else tpm.rate * RECENT * WINDOW_FILL

    async def wait(self, need: int) -> bool:
        """Wait until a request of `need` tokens fits in the shared window: True once
        it is counted there, False if it must go by the local bucket (Redis away)."""
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.line.append((need, turn))
        if self.serving is None:
            self.serving = asyncio.ensure_future(self._serve())
        return await turn

    def take_held(self, need: int) -> bool:
        """Take room for `need` from what this process holds, if enough is held and no
        request is waiting in line (no round trip)."""
        if self._hold is None or self.line:
            return False
        size = self._size(need)
        if size > self._held or self._key.clock() > self._hold_until:
            self._give_back()
            return False
        self._held -= size
        self._tell("", self._member(need, size), self._key.clock())
        return True

    def size(self, need: int) -> str:
        """The member that counts `need` in the window: sized now at the most it may cost."""
        return self._member(need, self._size(need))

    def _size(self, need: int) -> int:
        if isinstance(need, Reservation):
            need.taken = self._most(need.guess, need.max_tokens)
            return need.taken
        return int(need)

    def _member(self, need: int, size: int) -> str:
        self._seq += 1
        member = f"{self._key.pid}|{self._seq}|{size}"
        if isinstance(need, Reservation):
            need.member = member
        return member

    def _most(self, guess: int, max_tokens: int | None) -> int:
        """The most a request may cost (calibration.py): its prompt plus `max_tokens`,
        or the fitted reply and its misses once known. Without `max_tokens`, its
        reply counts at the fitted line and misses, else at the average reply (the
        calibration's `most` would count the prompt alone, and a burst of them
        could be let through at half their cost); before any reply, at nothing."""
        calibration = self._budgets.calibration
        most = calibration.most(guess, max_tokens or UNBOUNDED)
        if most < UNBOUNDED or max_tokens:
            return most
        most = calibration.reservation(guess, UNBOUNDED)
        return most if most < UNBOUNDED else calibration.most(guess, None)

    async def _serve(self) -> None:
        """Give the requests in line room in turn, one round trip per batch."""
        line, key = self.line, self._key
        me = asyncio.current_task()
        try:
            while line:
                if me is not None and me.cancelling():  # see SharedKey._renew
                    raise asyncio.CancelledError
                limit = self.limit()
                if limit is None or not key.live:
                    break  # the budget is gone, or Redis: the rest go by the local bucket
                if (left := key.pause.until - key.clock()) > 0:
                    await asyncio.sleep(left)  # nothing is counted while the key is paused
                    continue
                batch = list(islice(line, BATCH))
                members = [self.size(need) for need, _ in batch]
                reply = await self._ask(members, limit)
                if reply is None:  # Redis is away: the rest go by the local bucket
                    break
                admitted, wait = reply
                for _ in range(admitted):
                    need, turn = line.popleft()
                    if turn.done():  # cancelled while it was asked for: give its room back
                        self.dropped(need)
                    else:
                        turn.set_result(True)
                if admitted < len(batch):
                    await asyncio.sleep(min(max(wait, LEAST_WAIT), RECHECK))
        finally:
            # Done, cancelled (the loop shuts down) or a bug: never leave a request waiting.
            self.serving = None
            while line:
                turn = line.popleft()[1]
                if not turn.done():
                    turn.set_result(False)

    async def _ask(self, members: list[str], limit: float) -> tuple[int, float] | None:
        """One round trip: room for `members`, the news, and room to hold if little is."""
        hold = ""
        if self._held < limit * HOLD / 2 or self._key.clock() > self._hold_until - HOLD_LIFE / 2:
            hold = self._member(0, int(limit * HOLD))
        reply = await self._key.room(members, limit, self.take(), hold)
        if reply is None:
            return None
        admitted, wait, held = reply
        if held:
            self._give_back()
            self._hold, self._held = hold, int(limit * HOLD)
            self._hold_until = self._key.clock() + HOLD_LIFE
        return admitted, wait

    def _give_back(self) -> None:
        """Stop holding room (what was taken of it is counted send by send)."""
        if self._hold is not None:
            self._tell(self._hold, "", 0.0)
            self._hold, self._held = None, 0

    # -- news ---------------------------------------------------------------------------------

    def settled(self, need: int, used: int, sent_at: float) -> None:
        """A reply used `used` tokens: count its send at that, from when it went."""
        if isinstance(need, Reservation) and (member := need.member) is not None:
            need.member = None
            self._tell(member, f"{member.rpartition('|')[0]}|{used}", sent_at)

    def dropped(self, need: int) -> None:
        """A send the provider did not count (a 429), or that never went."""
        if isinstance(need, Reservation) and (member := need.member) is not None:
            need.member = None
            self._tell(member, "", 0.0)

    def added(self, tokens: int, sent_at: float) -> None:
        """Tokens sent outside the window (before the budget existed)."""
        self._seq += 1
        self._tell("", f"{self._key.pid}|{self._seq}|{tokens}", sent_at)

    def _tell(self, old: str, new: str, sent_at: float) -> None:
        if not self._key.live:
            return
        self.news += (old, new, f"{sent_at + self._key.offset:.6f}")
        if self.serving is None and not self._flushes:
            # No round trip coming: send the news alone, a little later (more may come).
            flush = asyncio.ensure_future(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        await asyncio.sleep(FLUSH_AFTER)
        if self.news and self._key.live:
            if (limit := self.limit()) is None:
                await self._key.room([], 0.0, self.take())
            else:
                await self._ask([], limit)

    def take(self) -> list[str]:
        """The news not yet sent (now sent)."""
        news, self.news = self.news, []
        return news

    def reset(self) -> None:
        """Forget the news and what is held (the link to Redis was lost: its window is
        gone or stale)."""
        self.news = []
        self._hold, self._held = None, 0
