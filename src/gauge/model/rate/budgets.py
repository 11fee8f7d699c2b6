"""A connection key's request and token budgets (RPM, TPM) and its token-window mirror.

The budgets are the lowest of what the user set (`rpm`, `tpm`), what the
provider's headers stated (at `SAFETY` / `TOKEN_SAFETY` of it, times `margin`)
and what was inferred from 429s (inference.py). A request reserves one request
and its estimated tokens before it goes, and settles the real usage when its
reply arrives (buckets.py); with a token budget it also waits for room in the
mirror of the provider's one-second window (window.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gauge.model.rate.buckets import TokenBucket
from gauge.model.rate.calibration import TokenCalibration
from gauge.model.rate.headers import SAFETY, TOKEN_SAFETY, RateHeaders
from gauge.model.rate.window import Entry, TokenWindow

Sleep = Callable[[float], Awaitable[object]]

RECENT = 1.0
"""Seconds of sends charged to a budget learned from headers, and the window a
request rate is measured over (the shortest window providers enforce their
per-minute limits over)."""
TOKEN_RECHECK = 0.1
"""Seconds between checks of a token reservation near the head of the line."""
TOKEN_RECHECK_FAR = 1.0
"""Most seconds between checks of one far back (a quarter of its wait, at most
this): 200 waiters re-checking every 0.1 s cost the tpm bench a third of its CPU."""
BUDGET_CUT = 0.97
"""Factor applied to the margin on learned limits on each rate-limit episode."""
MIN_MARGIN = 0.5
RECOVER_AFTER = 5.0
"""Seconds without a rate limit after which the margin is raised back by one cut."""
WINDOW_FILL = 0.99
"""Share of a token budget's per-second rate that may be sent within any RECENT
seconds (the slack absorbs estimation error; 0.97 cost 3 % of the tpm bench's
throughput and bought no fewer 429s once sends were timed from their slot)."""
WINDOW_SLACK = 0.01
"""Seconds a send stays in the mirror past RECENT: the provider's window counts it
from its arrival, a little after we counted it."""


class Budgets:
    """Request and token budgets of one connection key (in process)."""

    __slots__ = (
        "_calm_since",
        "_raised",
        "_user_rpm",
        "_user_tpm",
        "bound_at",
        "calibration",
        "inferred_rpm",
        "learned_rpm",
        "learned_tpm",
        "margin",
        "rpm",
        "tpm",
        "window",
    )

    def __init__(self) -> None:
        self.rpm: TokenBucket | None = None
        self.tpm: TokenBucket | None = None
        self.window: TokenWindow | None = None
        """Mirror of the provider's token window (with a token budget only)."""
        self.learned_rpm: float | None = None
        self.learned_tpm: float | None = None
        self.inferred_rpm = False
        """Whether learned_rpm was inferred from 429s (no headers) and is being probed."""
        self.margin = 1.0
        """Scale on learned limits, lowered by BUDGET_CUT on each rate-limit episode
        that happens within a learned budget (the provider's window is stricter
        than the headers say, e.g. it rejects a request that would cross it)."""
        self.calibration = TokenCalibration()
        self.bound_at = float("-inf")
        """When a request last waited for the request budget (the budget binds)."""
        self._user_rpm: float | None = None
        self._user_tpm: float | None = None
        self._calm_since = 0.0
        self._raised: asyncio.Future[None] | None = None

    @property
    def active(self) -> bool:
        """Whether any budget paces the key."""
        return self.rpm is not None or self.tpm is not None

    def configure(self, rpm: float | None, tpm: float | None, now: float) -> None:
        """Apply the user's budgets (cheap when nothing changed)."""
        if rpm != self._user_rpm or tpm != self._user_tpm:
            self._user_rpm, self._user_tpm = rpm, tpm
            self.rebudget(now)

    def rebudget(self, now: float) -> None:
        """Set the buckets from the user's, learned and inferred limits."""
        rpm = _lowest(self._user_rpm, self.learned_rpm, SAFETY * self.margin)
        tpm = _lowest(self._user_tpm, self.learned_tpm, TOKEN_SAFETY * self.margin)
        self.rpm = _bucket(self.rpm, rpm, now)
        self.tpm = _bucket(self.tpm, tpm, now)
        if self.tpm is None:
            self.window = None
        elif self.window is None:
            self.window = TokenWindow(RECENT, WINDOW_SLACK)

    def set_inferred(self, rpm: float, now: float) -> None:
        """Make `rpm` the inferred request budget."""
        self.learned_rpm = rpm
        self.inferred_rpm = True
        self.rebudget(now)

    def raise_inferred(self, rpm: float, now: float) -> None:
        """Raise the inferred request budget to `rpm` and wake the requests waiting on it."""
        self.learned_rpm = rpm
        self.rebudget(now)
        if (raised := self._raised) is not None:
            self._raised = None
            raised.set_result(None)

    def from_headers(self) -> bool:
        """Whether the provider told us its limits (x-ratelimit-limit-* headers)."""
        return self.learned_tpm is not None or (
            self.learned_rpm is not None and not self.inferred_rpm
        )

    # -- before an attempt -----------------------------------------------------------------

    def tickets(self, tokens: int, now: float) -> tuple[float, float]:
        """Reserve one request and `tokens` tokens; their places in line."""
        request = 0.0 if self.rpm is None else self.rpm.ticket(1, now)
        token = 0.0 if self.tpm is None or not tokens else self.tpm.ticket(tokens, now)
        return request, token

    async def wait_requests(
        self, ticket: float, sleep: Sleep, clock: Callable[[], float], probing: Callable[[], bool]
    ) -> None:
        """Wait until the request budget covers `ticket`; while `probing()`, a raise
        of the budget wakes the wait early."""
        rpm = self.rpm
        while rpm is not None and (left := rpm.wait_for(ticket, clock())) > 0:
            self.bound_at = clock()
            if probing():
                await self._sleep_until_raised(sleep, left)
            else:
                await sleep(left)

    async def wait_tokens(self, ticket: float, sleep: Sleep, clock: Callable[[], float]) -> None:
        """Wait until the token budget covers `ticket`."""
        tpm = self.tpm
        while tpm is not None and (left := tpm.wait_for(ticket, clock())) > 0:
            # Refunds from replies that used less than they reserved move this
            # reservation up: near the head of the line check often, far back rarely.
            await sleep(min(left, max(TOKEN_RECHECK, min(TOKEN_RECHECK_FAR, left / 4))))

    def window_wait(self, tokens: int, now: float) -> float:
        """Seconds until `tokens` more fit in the mirror of the provider's window."""
        tpm, window = self.tpm, self.window
        if tpm is None or window is None:
            return 0.0
        return window.wait(tokens, tpm.rate * RECENT * WINDOW_FILL, now)

    async def _sleep_until_raised(self, sleep: Sleep, seconds: float) -> None:
        """Sleep `seconds`, or less if a probe raises the request budget meanwhile.

        Every waiter then computes its wait again at the new pace, in line. Were
        they to sleep on, requests arriving after the raise would go before them,
        and both together would overrun the provider's window.
        """
        raised = self._raised
        if raised is None:
            raised = self._raised = asyncio.get_running_loop().create_future()
        nap = asyncio.ensure_future(sleep(seconds))
        try:
            await asyncio.wait((nap, raised), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()

    def refund(self, tokens: int, requests: bool, now: float) -> None:
        """Give back a reservation that was never used."""
        if tokens and self.tpm is not None:
            self.tpm.adjust(tokens, now)
        if requests and self.rpm is not None:
            self.rpm.adjust(1, now)

    def hold(self, until: float, now: float) -> None:
        """A key-wide pause until `until`: the buckets save no credit meanwhile."""
        for bucket in (self.rpm, self.tpm):
            if bucket is not None:
                bucket.hold(until, now)

    # -- after an attempt ------------------------------------------------------------------

    def settle(self, reserved: int, used: int | None, entry: Entry | None, now: float) -> None:
        """A reply used `used` tokens where `reserved` were reserved."""
        if used is not None and used > 0 and self.tpm is not None:
            # A request sent before the budget existed reserved nothing: charge its
            # usage now, or the provider's window holds tokens the budget never saw.
            self.tpm.adjust(reserved - used, now)
            if entry is not None and self.window is not None:
                self.window.settle(entry, used, now)
        if self.margin < 1.0 and now - self._calm_since >= RECOVER_AFTER:
            # The cut was for one episode; without this the budget ratchets down for good.
            self._calm_since = now
            self.margin = min(1.0, self.margin / BUDGET_CUT)
            self.rebudget(now)

    def rejected(self, reserved: int, entry: Entry | None, now: float) -> None:
        """The provider did not process a rejected request: its tokens are not spent."""
        if reserved and self.tpm is not None:
            self.tpm.adjust(reserved, now)
        if entry is not None and self.window is not None:
            self.window.settle(entry, 0, now)

    def episode(self, now: float, cut: bool) -> None:
        """A rate-limit episode began; with `cut` (the budgets paced the key), the
        headers' limits were too generous: cut the margin on them."""
        self._calm_since = now
        if cut and self.from_headers() and self.margin > MIN_MARGIN:
            self.margin *= BUDGET_CUT
            self.rebudget(now)

    def learn(self, info: RateHeaders, now: float) -> tuple[bool, bool] | None:
        """Take the limits and what is left from `info`.

        Returns which budgets existed before, when a stated limit changed them
        (the caller charges the recent sends to a new budget), else None.
        """
        changed = False
        if info.limit_requests and info.limit_requests != self.learned_rpm:
            self.learned_rpm, changed = info.limit_requests, True
            self.inferred_rpm = False
        if info.limit_tokens and info.limit_tokens != self.learned_tpm:
            self.learned_tpm, changed = info.limit_tokens, True
        had = None
        if changed:
            had = self.rpm is not None, self.tpm is not None
            self.rebudget(now)
        if info.remaining_requests is not None and self.rpm is not None:
            self.rpm.drain_to(info.remaining_requests, now)
        if info.remaining_tokens is not None and self.tpm is not None:
            self.tpm.drain_to(info.remaining_tokens, now)
        return had

    def charge(self, had: tuple[bool, bool], requests: int, tokens: int, now: float) -> None:
        """Charge budgets that were just created with what was already sent."""
        if self.rpm is not None and not had[0]:
            self.rpm.drain_to(-requests, now)
        if self.tpm is not None and not had[1]:
            self.tpm.drain_to(-tokens, now)

    def one_request(self, tokens: int) -> float:
        """Seconds the budgets take to earn one request of `tokens` tokens."""
        wait = 0.0
        if self.rpm is not None:
            wait = 1.0 / self.rpm.rate
        if self.tpm is not None and tokens:
            wait = max(wait, tokens / self.tpm.rate)
        return wait

    def reservation(self, guess: int, max_tokens: int | None) -> int:
        """Tokens to reserve for a prompt estimated at `guess` tokens (calibration.py)."""
        return self.calibration.reservation(guess, max_tokens)

    def most(self, guess: int, max_tokens: int | None) -> int:
        """The most a prompt estimated at `guess` tokens may cost (calibration.py)."""
        return self.calibration.most(guess, max_tokens)


def _lowest(user: float | None, learned: float | None, safety: float) -> float | None:
    planned = None if learned is None else learned * safety
    if user is None:
        return planned
    return user if planned is None else min(user, planned)


def _bucket(bucket: TokenBucket | None, per_minute: float | None, now: float) -> TokenBucket | None:
    if per_minute is None:
        return None
    if bucket is None:
        return TokenBucket.per_minute(per_minute, now)
    bucket.set_rate(per_minute / 60.0, now)
    return bucket
