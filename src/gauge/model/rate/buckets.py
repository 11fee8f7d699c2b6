"""Token buckets for request and token budgets (RPM, TPM), reserve-then-reconcile.

A bucket refills at `rate` units per second up to `capacity`. `reserve(n)` takes
`n` units at once, even into debt, and returns how long the caller must wait
before sending: successive reservations line up in time (first come, first
served) with O(1) work and no background task. After the answer, `adjust` puts
back what was over-reserved (or takes what was under-reserved).

The burst (`capacity`) is small on purpose: providers enforce a per-minute limit
over much shorter windows, so a bucket that let a full minute's budget out at
once would be rejected. The default burst is `BURST_SECONDS` of refill (at least
one unit); a reservation larger than the burst simply waits for its debt.
"""

from __future__ import annotations

BURST_SECONDS = 0.02
EPSILON = 1e-6


class TokenBucket:
    """`rate` units per second, at most `capacity` saved up."""

    __slots__ = ("_at", "capacity", "rate", "reserved", "tokens")

    def __init__(self, rate: float, capacity: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError(f"bucket rate must be > 0, got {rate}")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate * BURST_SECONDS)
        self.tokens = self.capacity
        self.reserved = 0.0
        """Units reserved so far (a reservation's place in the queue)."""
        self._at = now

    @classmethod
    def per_minute(cls, per_minute: float, now: float = 0.0) -> TokenBucket:
        """A bucket for a per-minute budget (rpm or tpm)."""
        return cls(per_minute / 60.0, now=now)

    def _refill(self, now: float) -> None:
        if now > self._at:
            self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
            self._at = now

    def reserve(self, amount: float, now: float) -> float:
        """Take `amount` now; return the seconds to wait until it is covered."""
        self._refill(now)
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def ticket(self, amount: float, now: float) -> float:
        """Reserve `amount` and return its place in line (for `wait_for`)."""
        self._refill(now)
        self.tokens -= amount
        self.reserved += amount
        return self.reserved

    def wait_for(self, ticket: float, now: float) -> float:
        """Seconds until the reservation holding `ticket` is covered.

        Unlike `reserve`'s answer this moves with refunds: when an earlier
        request gives back what it over-reserved, every later one moves up.
        """
        self._refill(now)
        debt_ahead = -self.tokens - (self.reserved - ticket)
        # Below EPSILON the debt is float noise: waiting for it could never end.
        return debt_ahead / self.rate if debt_ahead > EPSILON else 0.0

    def hold(self, until: float, now: float) -> None:
        """Save no credit until `until` (a key-wide pause): what waits, waits longer.

        Otherwise the credit earned during the pause would go out in one burst when
        it ends, straight into the provider's fresh window. Debt is still paid off
        during the pause: the provider's window forgets what was sent before it, so
        the pause and the debt must not both be waited out.
        """
        self._refill(now)
        earned = max(0.0, until - max(now, self._at)) * self.rate
        self.tokens = min(self.tokens + earned, 0.0)
        self._at = max(self._at, until)

    def adjust(self, amount: float, now: float) -> None:
        """Give back `amount` (negative: take more) once the real cost is known."""
        self._refill(now)
        self.tokens = min(self.capacity, self.tokens + amount)

    def set_rate(self, rate: float, now: float) -> None:
        """Change the refill rate (a learned or reconfigured limit), keeping the balance."""
        if rate <= 0 or rate == self.rate:
            return
        self._refill(now)
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = min(self.tokens, self.capacity)

    def drain_to(self, available: float, now: float) -> None:
        """Lower the balance to what the provider says is left (never raise it)."""
        self._refill(now)
        self.tokens = min(self.tokens, available)
