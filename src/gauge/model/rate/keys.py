"""One KeyState per connection key: controller, budgets, key-wide pause, counters.

Requests that share a connection key (provider + API key + model + base URL)
share one KeyState, so they share one concurrency limit, one RPM/TPM budget and
one pause: a Retry-After (or a budget reported as used up) stops every request
of the key, not only the one that was told. States live per event loop, since
the limiter's futures cannot cross loops.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gauge.model.limits import ConnectionLimiter, connection_limiter
from gauge.model.output import ModelUsage
from gauge.model.rate import inference
from gauge.model.rate.adaptive import DEFAULT_MAX, AdaptiveConcurrency
from gauge.model.rate.buckets import TokenBucket
from gauge.model.rate.calibration import TokenCalibration
from gauge.model.rate.headers import SAFETY, TOKEN_SAFETY, read_headers
from gauge.model.rate.inference import FAST_PROBE_FIRST, RECENT
from gauge.model.rate.window import Entry, TokenWindow

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

WINDOW = 60.0
"""Seconds of history behind the tokens-per-minute figure."""
TOKEN_RECHECK = 0.1
"""Seconds between checks of a token reservation near the head of the line."""
TOKEN_RECHECK_FAR = 1.0
"""Most seconds between checks of one far back (a quarter of its wait, at most
this): 200 waiters re-checking every 0.1 s cost the tpm bench a third of its CPU."""
BURST_HITS = 8
"""More 429s than this within one episode (COOLDOWN) are a burst of overload
(everything rejected for a while), not a probe that crossed the limit by a step:
the limit is not confirmed."""
LATENCY_WEIGHT = 0.1
"""Weight of each reply in the moving average of a round trip."""
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


class KeyState:
    """Rate control and counters of one connection key."""

    def __init__(
        self,
        key: str,
        limiter: ConnectionLimiter,
        start: int,
        clock: Clock,
        maximum: int = DEFAULT_MAX,
    ) -> None:
        self.key = key
        self.limiter = limiter
        self.clock = clock
        self.controller = AdaptiveConcurrency(start, maximum=maximum)
        limiter.set_limit(self.controller.limit)
        self.rpm: TokenBucket | None = None
        self.tpm: TokenBucket | None = None
        self.window: TokenWindow | None = None
        """Mirror of the provider's token window (with a token budget only)."""
        self.paused_until = 0.0
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.rate_limit_hits = 0
        self.pauses = 0
        self.tokens = 0
        self.learned_rpm: float | None = None
        self.learned_tpm: float | None = None
        self.margin = 1.0
        """Scale on learned limits, lowered by BUDGET_CUT on each rate-limit episode
        that happens within a learned budget (the provider's window is stricter
        than the headers say, e.g. it rejects a request that would cross it)."""
        self.inferred_rpm = False
        """Whether learned_rpm was inferred from 429s (no headers) and is being probed."""
        self._probed_at = 0.0
        self._step = 0.0
        """Next upward step of an unconfirmed inferred rate (0: confirmed, probe slowly)."""
        self._probe_from = 0.0
        """No fast probe before this time (one window after a rate limit's pause)."""
        self._raises: deque[tuple[float, float]] = deque()
        """(when, rate before) of the recent probes."""
        self._bound_at = float("-inf")
        """When a request last waited for the request budget (the budget binds)."""
        self._limited_at = float("-inf")
        """When the last rate limit came back."""
        self._episode_hits = 0
        """429s since the current rate-limit episode began."""
        self._grace_until = float("-inf")
        """An episode before this time, soon after one taken as a brief overload,
        measures the limit (the key's rate really was over it)."""
        self._latency = 0.0
        """Moving average of a successful attempt's round trip."""
        self._raised: asyncio.Future[None] | None = None
        """Set when a probe raises the request budget (wakes the waiters)."""
        self._calm_since = 0.0
        """When the last rate-limit episode began (margin recovery counts from it)."""
        self._sent: deque[float] = deque()
        """Send times of recent successes (the provider counted them in its window)."""
        self._mark: float | None = None
        """Send time of the rate-limited request that started the current measurement."""
        self._measured = 0
        self.calibration = TokenCalibration()
        self._fixed: int | None = None
        self._user_rpm: float | None = None
        self._user_tpm: float | None = None
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._started = clock()

    # -- configuration ---------------------------------------------------------------------

    def configure(self, max_connections: int | None, rpm: float | None, tpm: float | None) -> None:
        """Apply this request's settings (cheap when nothing changed)."""
        if max_connections != self._fixed:
            self._fixed = max_connections
            self.controller.set_fixed(max_connections)
            self.limiter.set_limit(self.controller.limit)
        if rpm != self._user_rpm or tpm != self._user_tpm:
            self._user_rpm, self._user_tpm = rpm, tpm
            self._rebudget()

    def _rebudget(self) -> None:
        now = self.clock()
        rpm = _lowest(self._user_rpm, self.learned_rpm, SAFETY * self.margin)
        tpm = _lowest(self._user_tpm, self.learned_tpm, TOKEN_SAFETY * self.margin)
        self.rpm = _bucket(self.rpm, rpm, now)
        self.tpm = _bucket(self.tpm, tpm, now)
        if self.tpm is None:
            self.window = None
        elif self.window is None:
            self.window = TokenWindow(RECENT, WINDOW_SLACK)

    # -- before an attempt -----------------------------------------------------------------

    @property
    def gated(self) -> bool:
        """Whether an attempt may have to wait before taking a slot."""
        return self.paused_until > 0.0 or self.rpm is not None or self.tpm is not None

    async def admit(
        self, tokens: int, sleep: Sleep, most: int | Callable[[], int] | None = None
    ) -> Entry | None:
        """Wait out a key-wide pause and reserve the budgets (no slot is held).

        With a token budget, also wait for room for `most` tokens (the most the
        request can cost; default `tokens`) in the mirror of the provider's window
        (window.py); returns the send's entry there, for the reply to settle.
        A callable `most` is asked once the budgets let the request go: a request
        that queued behind many others is then sized with what their replies taught.
        """
        await self.wait_pause(sleep)
        now = self.clock()
        rpm = self.rpm
        tpm = self.tpm if tokens else None
        request_ticket = 0.0 if rpm is None else rpm.ticket(1, now)
        token_ticket = 0.0 if tpm is None else tpm.ticket(tokens, now)
        try:
            # Checked again after each sleep: a pause that began meanwhile holds
            # the buckets, which moves every reservation back.
            while rpm is not None and (left := rpm.wait_for(request_ticket, self.clock())) > 0:
                self._bound_at = self.clock()
                if self._step:
                    await self._sleep_until_raised(sleep, left)
                else:
                    await sleep(left)
            while tpm is not None and (left := tpm.wait_for(token_ticket, self.clock())) > 0:
                # Wake up now and then: refunds from replies that used less than
                # they reserved move this reservation up the line.
                # Near the head of the line (left small) often, far back rarely: a
                # refund moves everyone up, but only the first few can go on it.
                await sleep(min(left, max(TOKEN_RECHECK, min(TOKEN_RECHECK_FAR, left / 4))))
            window = self.window if tpm is not None else None
            size = tokens if most is None else most() if callable(most) else most
            waited = 0.0  # the pause deadline already waited out
            while True:
                while window is not None and (left := self._window_wait(window, size)) > 0:
                    await sleep(left)
                if not self.paused or self.paused_until <= waited:
                    break
                # A pause began while we waited: wait it out, then look at the window
                # again. Checking it before the pause and counting the send after
                # would let every request held by the pause go at once, past it.
                waited = self.paused_until
                await self.wait_pause(sleep)
        except BaseException:
            self.refund(tokens, requests=True)
            raise
        if window is None:
            return None
        return window.add(size, self.clock())

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

    def _window_wait(self, window: TokenWindow, tokens: int) -> float:
        tpm = self.tpm
        if tpm is None:
            return 0.0
        return window.wait(tokens, tpm.rate * RECENT * WINDOW_FILL, self.clock())

    @property
    def paused(self) -> bool:
        """Whether a key-wide pause is in force."""
        return self.paused_until > 0.0 and self.paused_until > self.clock()

    async def wait_pause(self, sleep: Sleep) -> None:
        """Wait until the key-wide pause (if any) is over."""
        while self.paused_until > 0.0:
            until = self.paused_until
            left = until - self.clock()
            if left <= 0:
                self.paused_until = 0.0
                return
            await sleep(left)
            # Wait again only if the pause was extended meanwhile (never spin on a
            # sleep that returned early).
            if self.paused_until <= until:
                return

    def refund(self, tokens: int, requests: bool = False) -> None:
        """Give back a reservation that was never used."""
        now = self.clock()
        if tokens and self.tpm is not None:
            self.tpm.adjust(tokens, now)
        if requests and self.rpm is not None:
            self.rpm.adjust(1, now)

    # -- after an attempt ------------------------------------------------------------------

    def succeeded(
        self,
        reserved: int,
        used: int | None,
        saturated: bool,
        headers: Mapping[str, str] | None,
        sent_at: float | None = None,
        usage: ModelUsage | None = None,
        guess: int = 0,
        entry: Entry | None = None,
    ) -> None:
        """Count a successful attempt, reconcile its tokens and maybe grow.

        `sent_at` (the clock when the attempt took its slot) feeds the request
        rate measured after a rate limit without headers; `usage` and `guess`
        (the plain estimate of the prompt's tokens) calibrate `reservation`.
        """
        self.requests += 1
        self.successes += 1
        now = self._count_tokens(used or 0)
        if guess and usage is not None and usage.input_tokens:
            self.calibration.learn(guess, usage.input_tokens, usage.output_tokens)
        if used is not None and used > 0 and self.tpm is not None:
            # A request sent before the budget existed reserved nothing: charge its
            # usage now, or the provider's window holds tokens the budget never saw.
            self.tpm.adjust(reserved - used, now)
            if entry is not None and self.window is not None:
                self.window.settle(entry, used, now)
        if sent_at is not None:
            took = now - sent_at
            latency = self._latency
            self._latency = latency + LATENCY_WEIGHT * (took - latency) if latency else took
            inference.sent_ok(self, sent_at, now)
        if headers is not None:
            self.learn(headers)
        if self.inferred_rpm and self.learned_rpm is not None:
            inference.probe(self, now)
        if self.margin < 1.0 and now - self._calm_since >= RECOVER_AFTER:
            # The cut was for one episode; without this the budget ratchets down for good.
            self._calm_since = now
            self.margin = min(1.0, self.margin / BUDGET_CUT)
            self._rebudget()
        limit = self.controller.on_success(saturated)
        if limit != self.limiter.limit:
            self.limiter.set_limit(limit)

    def failed(
        self,
        kind: str,
        retry_after: float | None,
        reserved: int,
        headers: Mapping[str, str] | None,
        sent_at: float | None = None,
        entry: Entry | None = None,
    ) -> None:
        """Count a failed attempt; a rate limit cuts concurrency or the budget, and
        pauses the key."""
        self.requests += 1
        self.failures += 1
        if headers is not None:
            self.learn(headers)
        if kind != "rate_limit":
            return
        self.rate_limit_hits += 1
        now = self.clock()
        self._limited_at = now
        # The provider did not process a rejected request: its tokens are not spent.
        if reserved and self.tpm is not None:
            self.tpm.adjust(reserved, now)
        if entry is not None and self.window is not None:
            self.window.settle(entry, 0, now)
        episode = now >= self.controller.hold_until
        if episode:
            self._calm_since = now
            self._episode_hits = 0
        self._episode_hits += 1
        if self._episode_hits > BURST_HITS and self.inferred_rpm and not self._step:
            self._step = FAST_PROBE_FIRST
        # A budget (set by the user, learned from headers or inferred) paces the key:
        # cutting concurrency too would only bunch requests that already hold a
        # reservation behind fewer slots.
        paced = self.rpm is not None or self.tpm is not None
        if not paced:
            limit = self.controller.on_rate_limit(now)
            if limit != self.limiter.limit:
                self.limiter.set_limit(limit)
        elif episode:
            self.controller.hold_until = now + self.controller.cooldown
            if self._from_headers() and self.margin > MIN_MARGIN:
                self.margin *= BUDGET_CUT
                self._rebudget()
        if episode and not self._from_headers():
            inference.infer_rate(self, now if sent_at is None else sent_at, retry_after or 0.0)
        if retry_after is not None and retry_after > 0:
            if paced:
                # The budget already paces below the limit, and the provider's
                # window frees up as fast as we filled it: hold the key for one
                # request's worth of budget, not the whole Retry-After (the rejected
                # request itself still waits its Retry-After in the retry stage).
                retry_after = min(retry_after, self._one_request(reserved))
            self.pause(retry_after, now)

    def reservation(self, guess: int, max_tokens: int | None) -> int:
        """Tokens to reserve for a prompt estimated at `guess` tokens (calibration.py)."""
        return self.calibration.reservation(guess, max_tokens)

    def most(self, guess: int, max_tokens: int | None) -> int:
        """The most a prompt estimated at `guess` tokens may cost (calibration.py)."""
        return self.calibration.most(guess, max_tokens)

    def _from_headers(self) -> bool:
        """Whether the provider told us its limits (x-ratelimit-limit-* headers)."""
        return self.learned_tpm is not None or (
            self.learned_rpm is not None and not self.inferred_rpm
        )

    def _one_request(self, tokens: int) -> float:
        """Seconds the budgets take to earn one request of `tokens` tokens."""
        wait = 0.0
        if self.rpm is not None:
            wait = 1.0 / self.rpm.rate
        if self.tpm is not None and tokens:
            wait = max(wait, tokens / self.tpm.rate)
        return wait

    def pause(self, seconds: float, now: float) -> None:
        """Hold every new attempt of this key for `seconds` (in-flight ones finish)."""
        until = now + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1
            for bucket in (self.rpm, self.tpm):
                if bucket is not None:
                    bucket.hold(until, now)

    def learn(self, headers: Mapping[str, str]) -> None:
        """Update budgets from the provider's x-ratelimit-* headers."""
        info = read_headers(headers)
        if info is None:
            return
        changed = False
        if info.limit_requests and info.limit_requests != self.learned_rpm:
            self.learned_rpm, changed = info.limit_requests, True
            self.inferred_rpm = False
            self._mark = None
        if info.limit_tokens and info.limit_tokens != self.learned_tpm:
            self.learned_tpm, changed = info.limit_tokens, True
        if changed:
            had = self.rpm is not None, self.tpm is not None
            self._rebudget()
            self._charge_recent(had)
        now = self.clock()
        if info.remaining_requests is not None and self.rpm is not None:
            self.rpm.drain_to(info.remaining_requests, now)
        if info.remaining_tokens is not None and self.tpm is not None:
            self.tpm.drain_to(info.remaining_tokens, now)
        if (wait := info.exhausted_for()) is not None and wait > 0:
            self.pause(wait, now)

    def _charge_recent(self, had: tuple[bool, bool]) -> None:
        """Charge a budget that was just learned with what the last second already sent.

        Without this the first wave, sent before any header arrived, would be
        spent twice: once by us, and again by the provider's window. Requests in
        flight count as one request each now; their tokens are charged when their
        replies come back (they reserved none).
        """
        now = self.clock()
        done, tokens = 0, 0
        for at, used in reversed(self._window):
            if now - at > RECENT:
                break
            done += 1
            tokens += used
        requests = done + self.limiter.in_flight
        if self.rpm is not None and not had[0]:
            self.rpm.drain_to(-requests, now)
        if self.tpm is not None and not had[1]:
            self.tpm.drain_to(-tokens, now)

    # -- visibility ------------------------------------------------------------------------

    def _count_tokens(self, used: int) -> float:
        now = self.clock()
        self.tokens += used
        window = self._window
        window.append((now, used))
        self._window_tokens += used
        while window and now - window[0][0] > WINDOW:
            self._window_tokens -= window.popleft()[1]
        return now

    def tokens_per_minute(self) -> float:
        """Tokens used over the last minute (scaled up while younger than a minute)."""
        now = self.clock()
        while self._window and now - self._window[0][0] > WINDOW:
            self._window_tokens -= self._window.popleft()[1]
        span = min(WINDOW, max(now - self._started, 1.0))
        return self._window_tokens * 60.0 / span

    def stats(self) -> dict[str, Any]:
        """JSON-friendly snapshot for the progress display and the eval log."""
        now = self.clock()
        return {
            "key": public_key(self.key),
            "concurrency": self.limiter.limit,
            "adaptive": not self.controller.fixed,
            "in_flight": self.limiter.in_flight,
            "peak_in_flight": self.limiter.peak,
            "requests": self.requests,
            "rate_limit_hits": self.rate_limit_hits,
            "failures": self.failures,
            "pauses": self.pauses,
            "paused_for": round(max(0.0, self.paused_until - now), 3),
            "tokens": self.tokens,
            "tokens_per_minute": round(self.tokens_per_minute(), 1),
            "rpm": None if self.rpm is None else round(self.rpm.rate * 60, 1),
            "tpm": None if self.tpm is None else round(self.tpm.rate * 60, 1),
        }


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


def public_key(key: str) -> str:
    """`key` as shown in stats and errors (no URL credentials)."""
    # connection_key() is provider|base_url|sha256(api key)[:12]|model: already
    # free of secrets, but drop URL credentials should a base URL carry them.
    parts = key.split("|")
    if len(parts) > 1 and "@" in parts[1]:
        scheme, _, rest = parts[1].partition("://")
        parts[1] = f"{scheme}://{rest.rpartition('@')[2]}" if rest else parts[1]
    return "|".join(parts)


_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, KeyState]]
_states = weakref.WeakKeyDictionary()


def key_state(
    key: str, start: int, clock: Clock = time.monotonic, maximum: int = DEFAULT_MAX
) -> KeyState:
    """The running loop's state for `key`, created with `start` slots on first use
    (adapting up to `maximum`)."""
    loop = asyncio.get_running_loop()
    per_loop = _states.get(loop)
    if per_loop is None:
        per_loop = _states[loop] = {}
    state = per_loop.get(key)
    if state is None:
        limiter = connection_limiter(key, start)
        state = per_loop[key] = KeyState(key, limiter, start, clock, maximum)
    return state


def all_stats() -> list[dict[str, Any]]:
    """Stats of every key of the running event loop (of every live loop outside one)."""
    try:
        loops = [asyncio.get_running_loop()]
    except RuntimeError:
        loops = list(_states.keys())
    return [state.stats() for loop in loops for state in _states.get(loop, {}).values()]


def estimate_tokens(texts: list[str], max_tokens: int | None) -> int:
    """Tokens to reserve before a request: about 4 characters per token, plus 4 per
    message for the chat framing, plus `max_tokens` (the most the reply may use)."""
    return sum(len(t) for t in texts) // 4 + 4 * len(texts) + (max_tokens or 0)
