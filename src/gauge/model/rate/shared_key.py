"""A connection key shared through Redis: its parts, and the round trips that keep them.

`build_parts` makes the parts a `ConnectionKey` is built from (parts.KeyParts)
when shared state is on (shared.py): budgets paced by shared schedules
(shared_budgets.py) and the shared slots, pause, stop and inference
(shared_parts.py). They all talk to Redis through one `SharedKey` per
connection key and event loop, which:

- joins on the first request (one round trip: this process's lease, the
  learned limits, the pause; every later request pays no round trip for it);
- renews in the background (the `sync` script) every ACTIVE_EVERY seconds while
  requests flow (IDLE_EVERY otherwise), and at once when this process is short of
  slots or has news (new limits, a fatal-error streak): its lease expires
  LEASE_TTL seconds after the last renewal, so a killed process's slots come back
  within seconds;
- takes blocks of grants for the request budget (`take`), one fetch at a time,
  and the next block before the last runs out;
- asks room in the token window for the requests in line, with its news about
  earlier sends (`room`, shared_window.py);
- writes a pause at once (`pause`), and hears the others' with its next round trip;
- when Redis goes away, turns every part local (the link warns once) and, when
  it is back, joins again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gauge.model.rate.parts import KeyBudgets, KeyParts
from gauge.model.rate.shared_budgets import (
    Grants,
    SharedBudgets,
    burst_seconds,
    decode_limits,
    encode_limits,
)
from gauge.model.rate.shared_link import link_for
from gauge.model.rate.shared_names import key_names, label, process_id
from gauge.model.rate.shared_parts import (
    SharedInference,
    SharedPause,
    SharedSlots,
    SharedStop,
)
from gauge.model.rate.shared_window import SPAN

if TYPE_CHECKING:
    from gauge.model.rate.keys import ConnectionKey
    from gauge.model.rate.shared import SharedSetting

ACTIVE_EVERY = 0.1
"""Seconds between renewals while requests flow (other processes' pauses, limits
and sends are heard at this pace)."""
IDLE_EVERY = 1.0
ACTIVE_FOR = 2.0
"""Seconds after the last request during which the key counts as active."""
LEASE_TTL = 3.0
"""Seconds a process's concurrency lease outlives its last renewal."""
SOON = 0.01
"""Least seconds between two renewals asked for early (a shortage, news)."""
SHORT_EVERY = 0.05
"""Least seconds between two renewals asked for by a shortage of slots."""
KEEP_MS = 3_600_000
"""A key's Redis state expires an hour after its last use."""
BIN = 0.025
"""Seconds per bin of the successful sends shared for rate inference."""
HEARD_SPAN = 2.0
"""Seconds of other processes' sends kept (the inference measures over 1 s, 2 s back)."""
KEEP_BINS = 160
"""Bins Redis keeps (4 s)."""
STOP_KEEP = 300.0
"""Seconds a fatal-error streak in Redis stays relevant without a new error."""
PAUSE_EPSILON = 0.005
"""A pause heard back must end this much later than the one held to be new (each
round trip maps Redis's time onto this clock a little differently)."""
CLOCK_AGING = 0.001
"""Seconds a kept round trip ages per second (see SharedKey.timed)."""
COOLDOWN = 1.0
"""Seconds during which the shared controller cuts the limit once (adaptive.COOLDOWN)."""


class SharedKey:
    """One connection key's shared state in this process and event loop."""

    def __init__(
        self,
        setting: SharedSetting,
        name: str,
        start: int,
        clock: Callable[[], float],
        maximum: int,
    ) -> None:
        self.link = link_for(setting)
        self.names = key_names(name)
        self.label = label(name)
        self.pid = process_id()
        self.clock = clock
        self.start, self.maximum = start, maximum
        self.slots = SharedSlots(start, maximum, self)
        self.pause = SharedPause(self)
        self.budgets = SharedBudgets(self)
        self.stop = SharedStop(name, clock, self)
        self.key: ConnectionKey | None = None
        self.inference: SharedInference | None = None
        self.started = False
        """Whether the first round trip was made (shared or not, requests go on)."""
        self.live = False
        """Whether the parts are shared now (joined, and Redis answers)."""
        self.offset = 0.0
        """Redis's time minus this clock's, from the quickest recent round trip."""
        self._rtt = float("inf")
        self._rtt_at = 0.0
        self.holders = 1
        self._joining: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._synced_at = float("-inf")
        self._requests_seen = -1
        self._active_at = clock()
        self._limits_dirty = False
        self._changes = 0
        self._version = -1
        self._stop_op = ""
        self._stop_sig = ""
        self._stop_inc = 0
        self._outbox: dict[int, int] = {}
        self._seen: dict[bytes, int] = {}
        self._pushes: set[asyncio.Task[Any]] = set()
        self.link.members.add(self)

    def attach(self, key: ConnectionKey) -> None:
        """The ConnectionKey built from these parts (its counters and inference)."""
        self.key = key
        if isinstance(key.inference, SharedInference):
            self.inference = key.inference

    def make_inference(
        self, budgets: KeyBudgets, in_flight: Callable[[], int], paused: Callable[[], bool]
    ) -> SharedInference:
        """The key's rate inference, over every process's sends."""
        return SharedInference(budgets, in_flight, paused, self)

    # -- joining and renewing -----------------------------------------------------------------

    async def join(self) -> None:
        """Make the first round trip (once; every first request waits for the same one)."""
        if self._joining is None:
            self._joining = asyncio.ensure_future(self._first())
        await asyncio.shield(self._joining)

    async def _first(self) -> None:
        await self.sync()
        self.started = True
        self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        me = asyncio.current_task()
        while True:
            # On 3.11 a timeout inside a call (the redis client's own) may turn a
            # cancel that comes as it ends into a timeout error, which the link takes
            # for a lost Redis: the loop's shutdown would then wait here forever.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            every = ACTIVE_EVERY if self._active() else IDLE_EVERY
            timer = asyncio.get_running_loop().call_later(every, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            if not self.link.up:
                continue
            if (gap := self._synced_at + SOON - self.clock()) > 0:
                await asyncio.sleep(gap)
            await self.sync()

    def _active(self) -> bool:
        key, now = self.key, self.clock()
        if key is not None and key.counters.requests != self._requests_seen:
            self._requests_seen = key.counters.requests
            self._active_at = now
        return self.slots.leases.demand > 0 or now - self._active_at < ACTIVE_FOR

    def nudge(self) -> None:
        """Renew soon (at most every SOON seconds), not at the next period."""
        self._wake.set()

    def short(self) -> None:
        """This process has more demand than slots: ask for a larger share soon (not at
        every request: a process that wants more than its share stays short)."""
        now = self._active_at = self.clock()
        if now - self._synced_at >= SHORT_EVERY:
            self._wake.set()

    async def sync(self, leaving: bool = False) -> None:
        """One renewal round trip (see shared_scripts.SYNC)."""
        args, changes = self._sync_args(leaving)
        before = self.clock()
        reply = await self.link.run("sync", self.names.all(), args)
        after = self._synced_at = self.clock()
        if reply is None or leaving:
            return
        self._apply(reply, before, after, changes)

    def _sync_args(self, leaving: bool) -> tuple[list[str | int | float], int]:
        slots, budgets = self.slots, self.budgets
        # Requests waiting for their budget grants want slots next: with too few
        # leases they would queue for one after their grant's time, then go together,
        # and the provider's window would take more than the schedule gave.
        demand = slots.leases.demand + len(budgets.requests.line) + len(budgets.room.line)
        # First round trip: no demand known yet, ask for the whole start.
        wanted = slots.controller.limit if not self.started else demand + max(2, demand // 4)
        grown, cuts = slots.grown, slots.cuts
        slots.grown = slots.cuts = 0
        record = ""
        if self._limits_dirty:
            self._limits_dirty = False
            record = encode_limits(budgets.limits(), self.pid)
        outbox = ",".join(f"{b}:{n}" for b, n in self._outbox.items())
        self._outbox = {}
        since = -1
        if self.live and not budgets.from_headers():
            since = int((self.clock() + self.offset - HEARD_SPAN) / BIN)
        args: list[str | int | float] = [
            self.pid,
            max(1, min(slots.controller.limit, wanted)),
            slots.leases.in_flight,
            grown,
            cuts,
            slots.fixed or 0,
            self.start,
            self.maximum,
            LEASE_TTL,
            COOLDOWN,
            record,
            self._take_stop_op(),
            outbox,
            since,
            KEEP_MS,
            BIN,
            KEEP_BINS,
            STOP_KEEP,
            "1" if leaving else "0",
            self.label,
        ]
        return args, self._changes

    def _apply(self, reply: list[Any], before: float, now: float, changes: int) -> None:
        grant, limit, slow, holders, leader, others = (int(x) for x in reply[:6])
        pause, version, limits, stop_sig = reply[6:10]
        self.timed(float(reply[11]), before, now)
        self.holders = holders
        self.slots.shared(limit, bool(slow))
        self.slots.leases.grant(grant)
        if not self.live:
            self.live = True
            self.budgets.fall_back(1.0, now)
        self.heard_pause(float(pause), now)
        decoded = decode_limits(limits.decode())
        if int(version) != self._version:
            self._version = int(version)
            # A change made here while the round trip was out wins: it is sent next.
            mine = changes != self._changes
            adopted = not mine and decoded is not None and self.budgets.adopt(decoded[0], now)
            if adopted and self.inference is not None:
                self.inference.adopted(now)
        if decoded is None and (self.budgets.learned_rpm or self.budgets.learned_tpm):
            self._limits_dirty = True  # a Redis that lost its state: give it ours
        if (inference := self.inference) is not None:
            # The process that set the limits probes them (it knows how they were
            # measured); if it is gone, the oldest process does.
            owner = "" if decoded is None else decoded[1]
            inference.leader = owner == self.pid or (bool(leader) and not int(reply[13]))
            inference.others = others
        self.stop.heard(stop_sig.decode(), int(reply[10]))
        if reply[12] and inference is not None:
            inference.heard(self._heard(reply[12]), now)

    def _heard(self, bins: list[bytes]) -> list[float]:
        """Send times (this clock) of the other processes' successes not heard before."""
        seen, times = self._seen, []
        for field, raw in zip(bins[::2], bins[1::2], strict=True):
            count = int(raw)
            new = count - seen.get(field, 0)
            if new > 0:
                seen[field] = count
                at = (int(field.partition(b"|")[0]) + 0.5) * BIN - self.offset
                times.extend([at] * new)
        if len(seen) > 4 * KEEP_BINS:
            oldest = int((self.clock() + self.offset) / BIN) - KEEP_BINS
            for field in [f for f in seen if int(f.partition(b"|")[0]) < oldest]:
                del seen[field]
        return times

    def timed(self, redis_now: float, before: float, after: float) -> None:
        """Map Redis's time onto this clock from a round trip that read it.

        Redis read its clock somewhere between `before` and `after`: the midpoint
        is off by up to half the round trip. On a loaded machine some round trips
        take tens of milliseconds (the process waited for a core), and the sends
        dated through the offset (the token window) would move by as much, so the
        quickest round trip of late is kept, allowed CLOCK_AGING more per second
        since it (the two clocks drift apart a little).
        """
        rtt = after - before
        if rtt <= self._rtt + (after - self._rtt_at) * CLOCK_AGING:
            self._rtt, self._rtt_at = rtt, after
            self.offset = redis_now - (before + after) / 2

    # -- what the parts tell -------------------------------------------------------------------

    def limits_changed(self) -> None:
        """The budgets' limits changed here: write them for every process."""
        self._changes += 1
        if self.live:
            self._limits_dirty = True
            self.nudge()

    def stop_update(self, op: str, sig: str = "") -> None:
        """The fatal-error streak grew by one (`inc`) or ended (`reset`)."""
        if not self.live:
            return
        if op == "reset":
            self._stop_op, self._stop_inc = "reset", 0
        elif self._stop_op == "inc" and sig == self._stop_sig:
            self._stop_inc += 1
        else:
            # After a reset sent in the same round trip, the streak starts again here;
            # else Redis adds it to a streak of the same error (or starts one).
            self._stop_op = "set" if self._stop_op == "reset" else "inc"
            self._stop_sig, self._stop_inc = sig, 1
        self.nudge()

    def _take_stop_op(self) -> str:
        op = self._stop_op
        self._stop_op = ""
        if op in ("inc", "set"):
            return f"{op},{self._stop_sig},{self._stop_inc}"
        return op

    def sent(self, sent_at: float) -> None:
        """A success sent at `sent_at` (this clock), for other processes' inference."""
        if self.live and not self.budgets.from_headers():
            b = int((sent_at + self.offset) / BIN)
            self._outbox[b] = self._outbox.get(b, 0) + 1

    def push_pause(self, until: float) -> None:
        """This process paused the key until `until`: tell Redis now."""
        if self.live:
            deadline = f"{until + self.offset:.6f}"
            task = asyncio.get_running_loop().create_task(
                self.link.run("pause", [self.names.state], [deadline, KEEP_MS])
            )
            self._pushes.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._pushes.discard)

    def heard_pause(self, deadline: float, now: float) -> None:
        """A pause in Redis until `deadline` (Redis's time): hold the key if it is new."""
        until = deadline - self.offset
        pause = self.pause
        if until <= now or until <= pause.until + PAUSE_EPSILON:
            return
        if pause.heard(until):
            self.budgets.hold(until, now)
            if self.key is not None:
                self.key.counters.slowed(
                    f"paused {until - now:.1f}s by another process sharing this key", now
                )

    # -- grants --------------------------------------------------------------------------------

    async def fetch(self, grants: Grants, rate: float) -> None:
        """Wait for the next block of `grants` (one fetch at a time per budget)."""
        fetching = grants.fetching
        if fetching is None:
            fetching = grants.fetching = asyncio.ensure_future(self._fetch(grants, rate))
        await asyncio.shield(fetching)

    def prefetch(self, grants: Grants, rate: float) -> None:
        """Take the next block before this one runs out."""
        if grants.fetching is None:
            grants.fetching = asyncio.ensure_future(self._fetch(grants, rate))

    async def _fetch(self, grants: Grants, rate: float) -> None:
        try:
            units = grants.block(rate)
            adjust = grants.adjust
            burst = f"{burst_seconds(rate):.6f}"
            args: list[str | int | float] = [
                grants.field,
                repr(rate),
                repr(units),
                burst,
                f"{adjust:.6f}",
                KEEP_MS,
            ]
            before = self.clock()
            reply = await self.link.run("take", [self.names.state], args)
            after = self.clock()
            if reply is None or not self.live:
                return
            grants.adjust -= adjust
            offset, redis_now, pause = (float(x) for x in reply)
            self.timed(redis_now, before, after)
            start = (before + after) / 2 + offset
            grants.spans.append([start, start + units / rate])
            self.heard_pause(pause, after)
        finally:
            grants.fetching = None

    async def room(
        self, members: list[str], limit: float, news: list[str], hold: str = ""
    ) -> tuple[int, float, bool] | None:
        """Ask room in the token window for `members` (in order), telling `news` first,
        and for the room of member `hold` to hold: (how many were admitted, seconds
        until the first one left out may fit, whether `hold` is held), or None when
        Redis did not answer."""
        args: list[str | int | float] = [
            f"{SPAN:.6f}",
            repr(limit),
            KEEP_MS,
            len(members),
            len(news) // 3,
            hold,
            *members,
            *news,
        ]
        before = self.clock()
        reply = await self.link.run("room", [self.names.window, self.names.state], args)
        after = self.clock()
        if reply is None or not self.live:
            return None
        self.timed(float(reply[2]), before, after)
        self.heard_pause(float(reply[3]), after)
        return int(reply[0]), float(reply[1]), bool(int(reply[4]))

    # -- Redis away and back ---------------------------------------------------------------------

    def down(self) -> None:
        """Redis is away: every part goes local; the budgets pace at this process's share."""
        if not self.live:
            return
        self.live = False
        self.slots.leases.grant(None)
        self.budgets.fall_back(1.0 / max(1, self.holders), self.clock())

    def up(self) -> None:
        """Redis is back: rejoin with the next renewal, taking the limits it holds."""
        self._version = -1
        self.nudge()

    async def leave(self) -> None:
        """Give this process's leases back now (instead of letting them expire)."""
        if self.started:
            await self.sync(leaving=True)


def build_parts(
    setting: SharedSetting, name: str, start: int, clock: Callable[[], float], maximum: int
) -> KeyParts:
    """The parts of connection key `name`, shared through `setting`'s Redis."""
    shared = SharedKey(setting, name, start, clock, maximum)
    return KeyParts(
        slots=shared.slots,
        pause=shared.pause,
        budgets=shared.budgets,
        stop=shared.stop,
        inference=shared.make_inference,
        attach=shared.attach,
    )
