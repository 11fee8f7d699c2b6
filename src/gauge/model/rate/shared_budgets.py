"""Request and token budgets shared by every process that uses one connection key.

The request budget (RPM) is one schedule in Redis (GCRA, the `take` script): a
process takes a block of grants ahead of need, which occupies n / rate seconds
of the schedule, and lets its requests go at their grants' times. So the
processes together send at the budget's rate, in one line, with one Redis round
trip per block (about BLOCK_SECONDS of the rate: 5 requests at 50/s; at most
MOST_GRANTS) instead of one per request. Grants a process does not use expire (a
pause drops those it covers).

The token budget (TPM) is the provider's window itself, kept in Redis: every
process's sends of the last second, each counted at what it may cost until its
reply says what it used (shared_window.py). A request goes when it fits.

Everything else is the in-process `Budgets`: the limits (the user's, learned
from headers, inferred from 429s) and their margin, the calibration of token
estimates. The limits are written to Redis (shared_key.py) so every process,
and a new one, plans with the same. While Redis is unreachable the in-process
buckets pace the key, each at its share of the rate (1 / the processes that
were sharing it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from gauge.model.rate.buckets import BURST_SECONDS, TokenBucket
from gauge.model.rate.budgets import Budgets, Sleep
from gauge.model.rate.headers import RateHeaders
from gauge.model.rate.shared_window import Reservation, SharedWindow
from gauge.model.rate.window import Entry

if TYPE_CHECKING:
    from gauge.model.rate.shared_key import SharedKey

BLOCK_SECONDS = 0.1
"""A block of grants covers about this much of the budget's time..."""
BLOCK_MOST_SECONDS = 0.25
"""...and at most this much (more would keep other processes waiting behind it)."""
MOST_GRANTS = 100
"""Most request grants in one block. Under a budget that binds, blocks stay near
BLOCK_SECONDS of it (5 requests at 50/s, 20 at 200/s); far above the demand (a
budget that never binds) a block lasts a process 100 requests, so a fetch is rarely
awaited: with 20, a process sending 5,000 requests/s ran dry between fetches and its
requests queued behind them (0.63x the calls/s of in process)."""
AHEAD = BLOCK_SECONDS
"""Seconds ahead of their time the requests in line are given their grants."""
LOCAL = float("-inf")
"""The grant time that says: Redis is away, wait for the local bucket instead."""
LATE = 0.01
"""Seconds past its burst a grant may still be used: a block arrives a round trip
after Redis dated it (at a rate far above the demand, it starts a burst back)."""
EPSILON = 1e-9

Limits = tuple[float | None, float | None, bool, float]
"""(learned rpm, learned tpm, whether the rpm was inferred, margin): what is shared."""


class Grants:
    """Spans of the shared request schedule this process holds, in its own clock's
    time, and the line of this process's requests waiting for them.

    A request that finds the line empty and enough held takes its grant at once.
    Otherwise it joins the line, which one task (`SharedBudgets._serve_line`) serves
    in order, fetching a block when what is held runs out: a grant is assigned when
    its turn comes, and the request then sleeps until the grant's time. Were each
    request to fetch for itself, a process with 200 requests waiting would reserve
    seconds of the shared schedule ahead, and a raise of the budget (a probe of an
    inferred rate) would show only once those seconds had passed.
    """

    __slots__ = ("adjust", "fetching", "field", "line", "serving", "spans", "waiting")

    def __init__(self, field: str = "r") -> None:
        self.field = field
        """The schedule's field in the key's Redis hash."""
        self.spans: deque[list[float]] = deque()
        """[start, end] of each block taken, oldest first."""
        self.adjust = 0.0
        """Seconds of schedule to add (debt) with the next block."""
        self.fetching: asyncio.Future[None] | None = None
        self.waiting = 0.0
        """Requests waiting for a block."""
        self.line: deque[tuple[float, asyncio.Future[float]]] = deque()
        """(what it needs, when it may go) of each request waiting for its turn."""
        self.serving: asyncio.Future[None] | None = None

    def take(self, units: float, rate: float, now: float) -> float | None:
        """Use `units` of what is held: when they may go (this clock), or None if
        too little is held. Spans more than a burst old are dropped first: a
        grant not used in its time is lost, else unused grants would add up to a
        burst."""
        burst = burst_seconds(rate)
        spans = self.spans
        oldest = now - burst - LATE
        while spans and spans[0][1] <= oldest:
            spans.popleft()
        if not spans:
            return None
        spans[0][0] = max(spans[0][0], oldest)
        need = units / rate
        if sum(end - start for start, end in spans) + EPSILON < need:
            return None
        first = end = spans[0][0]
        while need > EPSILON:
            span = spans[0]
            if span[1] - span[0] <= need + EPSILON:
                need -= span[1] - span[0]
                end = span[1]
                spans.popleft()
            else:
                span[0] += need
                end, need = span[0], 0.0
        # As a bucket with a burst's capacity: the units go when all but the
        # burst of them has been earned.
        return max(first, end - burst)

    def held(self, rate: float) -> float:
        """Units held."""
        return rate * sum(end - start for start, end in self.spans)

    def block(self, rate: float) -> float:
        """Units to take next: about BLOCK_SECONDS of the rate, more for the waiting
        requests, at most BLOCK_MOST_SECONDS (MOST_GRANTS requests)."""
        most = max(1.0, min(MOST_GRANTS, rate * BLOCK_MOST_SECONDS))
        return float(round(min(most, max(1.0, rate * BLOCK_SECONDS, self.waiting))))

    def trim(self, until: float) -> None:
        """Drop what falls before `until` (a pause holds the key until then)."""
        spans = self.spans
        while spans and spans[0][1] <= until:
            spans.popleft()
        if spans:
            spans[0][0] = max(spans[0][0], until)

    def clear(self) -> None:
        """Forget everything held and owed (the link to Redis was lost)."""
        self.spans.clear()
        self.adjust = 0.0


class TokenTicket(float):
    """A shared token ticket: minus the tokens, and the reservation behind them."""

    reservation: int

    def __new__(cls, reservation: int) -> Self:
        self = super().__new__(cls, -float(reservation))
        self.reservation = reservation
        return self


class SharedBudgets(Budgets):
    """Budgets paced by schedules shared through Redis; in process while it is away."""

    __slots__ = ("_key", "_record", "requests", "room", "share")

    def __init__(self, key: SharedKey) -> None:
        super().__init__()
        self._key = key
        self.requests = Grants()
        self.room = SharedWindow(key, self)
        """The token window shared in Redis."""
        self.share = 1.0
        """This process's share of the rate while Redis is away (1 while shared)."""
        self._record = self.limits()

    # -- what is shared ---------------------------------------------------------------------

    def limits(self) -> Limits:
        """What this process knows of the key's limits."""
        return self.learned_rpm, self.learned_tpm, self.inferred_rpm, self.margin

    def _noticed(self) -> None:
        if (record := self.limits()) != self._record:
            self._record = record
            self._key.limits_changed()

    def adopt(self, limits: Limits, now: float) -> bool:
        """Limits another process learned (or inferred, or cut); whether they changed."""
        if limits == self.limits():
            return False
        rpm = limits[0]
        raised = limits[2] and rpm is not None and rpm > (self.learned_rpm or 0.0)
        self.learned_rpm, self.learned_tpm, self.inferred_rpm, self.margin = limits
        self._record = limits
        self.rebudget(now)
        if raised and (waiters := self._raised) is not None:
            self._raised = None
            waiters.set_result(None)
        return True

    def fall_back(self, share: float, now: float) -> None:
        """Redis is away (`share` < 1) or back (1): pace locally at `share` of the rate."""
        self.requests.clear()
        self.room.reset()
        if share != self.share:
            self.share = share
            self.rebudget(now)

    def rebudget(self, now: float) -> None:
        """Set the buckets from the limits; scaled to this process's share while local."""
        super().rebudget(now)
        if self.share < 1.0:
            for bucket in (self.rpm, self.tpm):
                if bucket is not None:
                    bucket.set_rate(bucket.rate * self.share, now)

    # -- before an attempt: grants from the shared schedule, room in the shared window -------

    def tickets(self, tokens: int, now: float) -> tuple[float, float]:
        """Reserve one request and `tokens` tokens. Shared, a ticket is minus the units
        (asked from Redis when the request waits); local, a place in line."""
        if not self._key.live:
            return super().tickets(tokens, now)
        return (-1.0 if self.rpm is not None else 0.0), (
            TokenTicket(tokens) if self.tpm is not None and tokens else 0.0
        )

    def reservation(self, guess: int, max_tokens: int | None) -> int:
        """Tokens to reserve for a prompt estimated at `guess` tokens (sized again
        when the request's turn comes: shared_window.Reservation)."""
        return Reservation(super().reservation(guess, max_tokens), guess, max_tokens)

    async def wait_requests(
        self, ticket: float, sleep: Sleep, clock: Callable[[], float], probing: Callable[[], bool]
    ) -> None:
        """Wait for a request grant (shared) or the local bucket (`ticket` >= 0)."""
        if ticket >= 0.0:
            await super().wait_requests(ticket, sleep, clock, probing)
        else:
            await self._wait_grant(self.requests, -ticket, sleep, clock)

    async def wait_tokens(self, ticket: float, sleep: Sleep, clock: Callable[[], float]) -> None:
        """Wait for room in the shared window, or the local bucket (`ticket` >= 0)."""
        if ticket >= 0.0:
            await super().wait_tokens(ticket, sleep, clock)
            return
        need = ticket.reservation if isinstance(ticket, TokenTicket) else round(-ticket)
        room = self.room
        if (
            self._key.live
            and self.tpm is not None
            and (room.take_held(need) or await room.wait(need))
        ):
            return
        if self.tpm is not None:  # Redis went away meanwhile: the local line
            await _wait_local(self.tpm, float(need), sleep, clock)

    async def _wait_grant(
        self, grants: Grants, need: float, sleep: Sleep, clock: Callable[[], float]
    ) -> None:
        go = None if grants.line else self._grant(grants, need, clock())
        if go is None:  # wait for a turn in this process's line
            turn: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            grants.line.append((need, turn))
            if grants.serving is None:
                grants.serving = asyncio.ensure_future(self._serve_line(grants))
            go = await turn
        if go == LOCAL:  # Redis went away meanwhile: the local line
            if self.rpm is not None:
                await _wait_local(self.rpm, need, sleep, clock)
            return
        now = clock()
        if (left := go - now) > 0:
            self.bound_at = now
            await sleep(left)

    def _grant(self, grants: Grants, units: float, now: float) -> float | None:
        """When `units` may go (LOCAL: by the local bucket), or None: fetch first."""
        if self.rpm is None:  # the budget is gone meanwhile
            return now
        if not self._key.live:
            return LOCAL
        rate = self.rpm.rate
        go = grants.take(units, rate, now)
        grants.waiting = len(grants.line) + 1.0  # a block covers the requests in line
        if go is not None and grants.held(rate) < grants.block(rate) / 2:
            self._key.prefetch(grants, rate)
        return go

    async def _serve_line(self, grants: Grants) -> None:
        """Give the requests in line their grants in turn, fetching blocks as needed."""
        line = grants.line
        me = asyncio.current_task()
        try:
            while line:
                if me is not None and me.cancelling():  # see SharedKey._renew
                    raise asyncio.CancelledError
                need, turn = line[0]
                if turn.done():  # its request was cancelled
                    line.popleft()
                    continue
                go = self._grant(grants, need, self._key.clock())
                if go is None:
                    assert self.rpm is not None  # else _grant answered now
                    await self._key.fetch(grants, self.rpm.rate)
                    continue
                line.popleft()
                turn.set_result(go)
                # No further ahead than AHEAD: grants given out long before their time
                # are seconds of the shared schedule reserved in the old rate's steps,
                # and a raise of the budget would show only once they have passed.
                if (ahead := go - self._key.clock() - AHEAD) > 0:
                    await asyncio.sleep(ahead)
        except BaseException:
            # Cancelled (the loop shuts down) or a bug: never leave a request waiting.
            while line:
                turn = line.popleft()[1]
                if not turn.done():
                    turn.set_result(LOCAL)
            raise
        finally:
            grants.serving = None

    def window_wait(self, tokens: int, now: float) -> float:
        """The in-process window mirror sees this process's sends only: shared, the
        window in Redis holds the request back (`wait_tokens`)."""
        return 0.0 if self._key.live else super().window_wait(tokens, now)

    def hold(self, until: float, now: float) -> None:
        """A key-wide pause until `until`: the grants it covers are dropped."""
        super().hold(until, now)
        self.requests.trim(until)

    def refund(self, tokens: int, requests: bool, now: float) -> None:
        """Give back a reservation that was never used (and its room in the window)."""
        super().refund(tokens, requests, now)
        self.room.dropped(tokens)

    # -- after an attempt ------------------------------------------------------------------

    def settle(self, reserved: int, used: int | None, entry: Entry | None, now: float) -> None:
        """A reply used `used` tokens where `reserved` were reserved: its send counts
        at that in the shared window, from when it went. A request sent before the
        budget existed reserved nothing: its tokens are counted now."""
        margin = self.margin
        super().settle(reserved, used, entry, now)
        if self._key.live and used is not None and used > 0 and self.tpm is not None:
            if isinstance(reserved, Reservation) and reserved.member is not None:
                self.room.settled(reserved, used, now if entry is None else entry[0])
            elif not reserved:
                self.room.added(used, now)
        if self.margin != margin:
            self._noticed()

    def rejected(self, reserved: int, entry: Entry | None, now: float) -> None:
        """The provider did not count a rejected request: nor does the shared window."""
        super().rejected(reserved, entry, now)
        self.room.dropped(reserved)

    def episode(self, now: float, cut: bool) -> None:
        """A rate-limit episode began (the margin may be cut: shared)."""
        super().episode(now, cut)
        self._noticed()

    def learn(self, info: RateHeaders, now: float) -> tuple[bool, bool] | None:
        """Take the limits and what is left from `info` (new limits are shared)."""
        had = super().learn(info, now)
        self._noticed()
        return had

    def charge(self, had: tuple[bool, bool], requests: int, tokens: int, now: float) -> None:
        """Charge budgets that were just created with what this process already sent."""
        super().charge(had, requests, tokens, now)
        if self._key.live:
            if self.rpm is not None and not had[0]:
                self.requests.adjust += requests / self.rpm.rate
            if self.tpm is not None and not had[1] and tokens:
                self.room.added(tokens, now)

    def set_inferred(self, rpm: float, now: float) -> None:
        """Make `rpm` the inferred request budget (shared)."""
        super().set_inferred(rpm, now)
        self._noticed()

    def raise_inferred(self, rpm: float, now: float) -> None:
        """Raise the inferred request budget (shared)."""
        super().raise_inferred(rpm, now)
        self._noticed()


def burst_seconds(rate: float) -> float:
    """The burst a schedule allows, in seconds: one unit, or BURST_SECONDS of the rate
    if more (as the in-process buckets' capacity)."""
    return max(1.0 / rate, BURST_SECONDS)


async def _wait_local(
    bucket: TokenBucket, units: float, sleep: Sleep, clock: Callable[[], float]
) -> None:
    ticket = bucket.ticket(units, clock())
    while (left := bucket.wait_for(ticket, clock())) > 0:
        await sleep(left)


def encode_limits(limits: Limits, owner: str) -> str:
    """The limits as the `sync` script stores them (floats exactly, by repr), with
    the process that wrote them last (it probes an inferred rate)."""
    rpm, tpm, inferred, margin = limits
    fields = ["" if rpm is None else repr(rpm), "" if tpm is None else repr(tpm)]
    return ",".join([*fields, "1" if inferred else "0", repr(margin), owner])


def decode_limits(text: str) -> tuple[Limits, str] | None:
    """What encode_limits wrote (None: not limits)."""
    parts = text.split(",")
    if len(parts) != 5:
        return None
    try:
        rpm = float(parts[0]) if parts[0] else None
        tpm = float(parts[1]) if parts[1] else None
        return (rpm, tpm, parts[2] == "1", float(parts[3])), parts[4]
    except ValueError:
        return None
