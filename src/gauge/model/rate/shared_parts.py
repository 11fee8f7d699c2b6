"""The shared versions of a connection key's slots, pause, early stop and rate inference.

Each subclasses the in-process part and adds what crosses processes, through the
key's `SharedKey` (shared_key.py), which talks to Redis in the background:

    SharedLimiter / SharedSlots  concurrency leases: the process may hold `granted`
        slots, its share of the key's limit; one adaptive controller for every
        process runs in Redis (its growth and cuts are sent in batches)
    SharedPause    a pause this process sets is written to Redis at once; one
        another process set is heard with the next round trip
    SharedStop     the streak of identical fatal errors counts every process's
        errors (by a hash of the error: its text may hold a masked key)
    SharedInference  the sends of every process count in the measured rate, and
        only the oldest process probes an inferred rate upward

While Redis is away each part is its in-process self.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gauge.model.api import RetryDecision
from gauge.model.limits import ConnectionLimiter
from gauge.model.rate.inference import RateInference
from gauge.model.rate.parts import KeyBudgets
from gauge.model.rate.pause import Pause
from gauge.model.rate.slots import Slots
from gauge.model.rate.stop import REQUEST_SPECIFIC, STOP_SECONDS, FatalStop, _signature

if TYPE_CHECKING:
    from gauge.model.rate.shared_key import SharedKey


class SharedLimiter(ConnectionLimiter):
    """Connection slots capped by the leases this process holds (`granted`)."""

    __slots__ = ("_key", "granted", "wanted")

    def __init__(self, limit: int, key: SharedKey) -> None:
        super().__init__(limit)
        self._key = key
        self.wanted = limit
        """The controller's limit (the key's shared limit, as last heard)."""
        self.granted: int | None = None
        """Slots leased to this process (None: not shared now, no cap)."""

    async def acquire(self) -> None:
        """Wait for a free slot (joining the shared key on first use) and take it."""
        key = self._key
        if not key.started:
            await key.join()
        if self.granted is not None and self.in_flight >= self.limit:
            key.short()  # ask for a larger share now, not at the next renewal
        await super().acquire()

    def set_limit(self, limit: int) -> None:
        """Change the controller's limit; the leases still cap it."""
        if limit < 1:
            raise ValueError(f"connection limit must be >= 1, got {limit}")
        self.wanted = limit
        self._apply()

    def grant(self, granted: int | None) -> None:
        """The leases this process holds now (None: Redis is away, no cap)."""
        self.granted = granted
        self._apply()

    def _apply(self) -> None:
        granted = self.granted
        # Zero slots is a valid share (others hold them all): callers wait for a lease.
        self.limit = self.wanted if granted is None else min(self.wanted, granted)
        self._wake()

    @property
    def demand(self) -> int:
        """Attempts holding or waiting for a slot."""
        return self.in_flight + len(self._waiters)


class SharedSlots(Slots):
    """Slots whose limit is one adaptive controller for every process (run in Redis)."""

    __slots__ = ("_key", "cuts", "grown", "leases")

    def __init__(self, start: int, maximum: int, key: SharedKey) -> None:
        super().__init__(start, maximum)
        self._key = key
        self.leases = SharedLimiter(self.controller.limit, key)
        self.limiter = self.leases
        self.grown = 0
        """Saturated successes since the last renewal (the shared controller grows on them)."""
        self.cuts = 0
        """Cuts since the last renewal (the shared controller halves once per cooldown)."""

    @property
    def fixed(self) -> int | None:
        """The user's max_connections, if set."""
        return self._fixed

    def grow(self, saturated: bool) -> None:
        """A success: counted for the shared controller; the local view grows at once."""
        if saturated and self._key.live:
            self.grown += 1
        super().grow(saturated)

    def cut(self, now: float) -> tuple[int, int] | None:
        """A rate limit: counted for the shared controller; the local view is cut at once."""
        cut = super().cut(now)
        if cut is not None and self._key.live:
            self.cuts += 1
        return cut

    def shared(self, limit: int, slow: bool) -> None:
        """The shared controller's limit (renewals replace the local view with it)."""
        controller = self.controller
        if not controller.fixed:
            controller.limit = limit
            controller.slow_start = slow
        self.leases.set_limit(controller.limit)


class SharedPause(Pause):
    """The key-wide pause, written to Redis when this process sets it."""

    __slots__ = ("_key",)

    def __init__(self, key: SharedKey) -> None:
        super().__init__()
        self._key = key

    def extend(self, until: float) -> bool:
        """Hold the key until `until`, in every process."""
        if not super().extend(until):
            return False
        self._key.push_pause(until)
        return True

    def heard(self, until: float) -> bool:
        """A pause another process set (not written back)."""
        return super().extend(until)


def digest(signature: tuple[str, object, str]) -> str:
    """A fatal error's signature as shared: a hash (the message may hold a masked key)."""
    return hashlib.sha256(repr(signature).encode()).hexdigest()[:16]


class SharedStop(FatalStop):
    """The fatal-error early stop, counting the identical errors of every process."""

    __slots__ = ("_key", "_last", "_limit", "shared_count", "shared_sig")

    def __init__(self, key_name: str, clock: Callable[[], float], key: SharedKey) -> None:
        super().__init__(key_name, clock)
        self._key = key
        self.shared_sig = ""
        self.shared_count = 0
        self._last: BaseException | None = None
        self._limit = 0

    def failed(self, ex: BaseException, decision: RetryDecision, limit: int) -> bool:
        """Count a failed attempt, together with the other processes' identical ones."""
        if decision.kind != "fatal" or getattr(ex, "gauge_key_stopped", None) is not None:
            return super().failed(ex, decision, limit)
        signature = _signature(ex)
        shared = self.shared_count if self.shared_sig == digest(signature) else 0
        if signature[1] not in REQUEST_SPECIFIC and shared > (
            self.count if signature == self.signature else 0
        ):
            self.signature, self.count = signature, shared
        replay = super().failed(ex, decision, limit)
        if self.signature is None:  # an error of the request, not the key: as a success
            self._key.stop_update("reset")
        else:
            self._last, self._limit = ex, limit
            self._key.stop_update("inc", digest(self.signature))
        return replay

    def succeeded(self) -> None:
        """A request got through: every process's streak ends."""
        if self.count or self.shared_count:
            self._key.stop_update("reset")
        self.shared_sig, self.shared_count = "", 0
        super().succeeded()

    def heard(self, sig: str, count: int) -> None:
        """The streak in Redis. When other processes' errors take it past the limit,
        a process that met the same error stops now, without another request."""
        grew = count > (self.shared_count if sig == self.shared_sig else 0)
        self.shared_sig, self.shared_count = sig, count
        last = self._last
        if not grew or last is None or self.error is not None or self._limit <= 0:
            return
        signature = _signature(last)
        if count >= self._limit and digest(signature) == sig:
            self.signature, self.count = signature, count
            self.error = last
            self.until = self.clock() + STOP_SECONDS


class SharedInference(RateInference):
    """Rate inference over every process's sends; the oldest process probes."""

    __slots__ = ("_key", "leader", "others")

    def __init__(
        self,
        budgets: KeyBudgets,
        in_flight: Callable[[], int],
        paused: Callable[[], bool],
        key: SharedKey,
    ) -> None:
        super().__init__(budgets, lambda: in_flight() + self.others, paused)
        self._key = key
        self.leader = True
        """Whether this process probes the inferred rate (one does, for all)."""
        self.others = 0
        """Slots the other processes hold (their requests in flight, at most)."""

    def succeeded(self, sent_at: float, now: float) -> None:
        """A success sent at `sent_at`: measured here, and told to the other processes."""
        super().succeeded(sent_at, now)
        self._key.sent(sent_at)

    def heard(self, sent: Iterable[float], now: float) -> None:
        """Successes of other processes, sent at `sent` (this clock): each counts as
        one of this process's own in the measure of the key's rate."""
        for at in sent:
            self._sent_ok(at, now)

    def adopted(self, now: float) -> None:
        """Another process set the rate now: the next slow probe is PROBE_EVERY away."""
        self._probed_at = now

    def probe(self, now: float) -> None:
        """Raise an inferred rate; only the leader does (the process that set it, see
        SharedKey), so processes do not compound their raises (the others adopt the
        new rate with their next renewal)."""
        if self.leader:
            super().probe(now)
