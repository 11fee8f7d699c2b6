"""One ConnectionKey per connection key: the object every pipeline stage is handed.

Requests that share a connection key (provider + credential fingerprint + model
+ base URL) share one ConnectionKey, made of small named parts:

    slots      concurrency limiter driven by the adaptive controller (slots.py)
    budgets    request and token budgets, token-window mirror (budgets.py)
    pause      the key-wide pause that Retry-After or a used-up budget sets (pause.py)
    stop       the early stop after identical fatal errors (stop.py)
    inference  the request rate measured from 429s without headers (inference.py)
    counters   what the key did, and why it last slowed down (counters.py)

This class only orchestrates them: what happens before an attempt (`admit`) and
after it (`succeeded`, `failed`). The parts live in process; with the shared-state
setting on (shared.py) `connection_key` builds them shared across processes
through Redis (shared_key.py), behind the same methods (parts.py). Keys live per
event loop, since the limiter's futures cannot cross loops.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gauge.model.api import RetryDecision
from gauge.model.limits import DEFAULT_MAX
from gauge.model.output import ModelUsage
from gauge.model.rate.budgets import RECENT, Budgets
from gauge.model.rate.counters import KeyCounters
from gauge.model.rate.headers import RateHeaders, read_headers
from gauge.model.rate.inference import RateInference
from gauge.model.rate.label import public_key
from gauge.model.rate.parts import KeyBudgets, KeyParts, KeyPause, Limiter
from gauge.model.rate.pause import Pause
from gauge.model.rate.shared import parts_for
from gauge.model.rate.slots import Slots
from gauge.model.rate.stop import FatalStop
from gauge.model.rate.window import Entry

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

SPORADIC_SHARE = 0.25
"""A 429 whose headers show budget left is sporadic (retry the request, not the
key) while fewer than this share of recent answers were 429s; above it the
provider's window is stricter than its headers say, and the key slows down."""


@dataclass(slots=True)
class Ticket:
    """What one attempt reserved on its way in, settled when it comes back."""

    tokens: int = 0
    """Tokens reserved against the token budget."""
    guess: int = 0
    """The plain estimate of the prompt's tokens (the calibration learns from it)."""
    entry: Entry | None = None
    """The send's entry in the mirror of the provider's token window."""
    sent_at: float = 0.0
    """When the attempt took its slot (the provider counts it from about then)."""


class ConnectionKey:
    """Rate control, early stop and counters of one connection key."""

    def __init__(
        self,
        name: str,
        start: int,
        clock: Clock = time.monotonic,
        maximum: int = DEFAULT_MAX,
        parts: KeyParts | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.slots: Slots
        self.pause: KeyPause
        self.budgets: KeyBudgets
        self.stop: FatalStop
        if parts is None:  # in process, the default
            self.slots, self.pause, self.budgets = Slots(start, maximum), Pause(), Budgets()
            self.stop = FatalStop(name, clock)
            inference: Callable[..., RateInference] = RateInference
        else:
            self.slots, self.pause, self.budgets = parts.slots, parts.pause, parts.budgets
            self.stop, inference = parts.stop, parts.inference
        self.inference = inference(self.budgets, lambda: self.slots.in_flight, lambda: self.paused)
        self.counters = KeyCounters(clock())
        if parts is not None and parts.attach is not None:
            parts.attach(self)

    @property
    def limiter(self) -> Limiter:
        """The connection limiter (acquire/release one slot per attempt)."""
        return self.slots.limiter

    def configure(self, max_connections: int | None, rpm: float | None, tpm: float | None) -> None:
        """Apply this request's settings (cheap when nothing changed)."""
        self.slots.fix(max_connections)
        self.budgets.configure(rpm, tpm, self.clock())

    # -- before an attempt -----------------------------------------------------------------

    @property
    def gated(self) -> bool:
        """Whether an attempt may have to wait before taking a slot."""
        return self.pause.until > 0.0 or self.budgets.active

    @property
    def paused(self) -> bool:
        """Whether a key-wide pause is in force."""
        return self.pause.active(self.clock())

    async def wait_pause(self, sleep: Sleep) -> None:
        """Wait until the key-wide pause (if any) is over."""
        await self.pause.wait(sleep, self.clock)

    async def admit(
        self, tokens: int, sleep: Sleep, most: int | Callable[[], int] | None = None
    ) -> Entry | None:
        """Wait out a key-wide pause and reserve the budgets (no slot is held).

        With a token budget, also wait for room for `most` tokens (the most the
        request can cost; default `tokens`) in the mirror of the provider's window;
        returns the send's entry there, for the reply to settle. A callable `most`
        is asked once the budgets let the request go: a request that queued
        behind many others is then sized with what their replies taught.
        """
        await self.wait_pause(sleep)
        budgets, clock = self.budgets, self.clock
        request_ticket, token_ticket = budgets.tickets(tokens, clock())
        try:
            # Checked again after each sleep: a pause that began meanwhile holds
            # the buckets, which moves every reservation back.
            await budgets.wait_requests(
                request_ticket, sleep, clock, lambda: self.inference.probing
            )
            metered = tokens > 0 and budgets.tpm is not None
            if metered:
                await budgets.wait_tokens(token_ticket, sleep, clock)
            size = tokens if most is None else most() if callable(most) else most
            await self._wait_window(size if metered else 0, sleep)
        except BaseException:
            self.refund(tokens, requests=True)
            raise
        window = budgets.window
        return None if not metered or window is None else window.add(size, clock())

    async def _wait_window(self, size: int, sleep: Sleep) -> None:
        waited = 0.0  # the pause deadline already waited out
        while True:
            while size and (left := self.budgets.window_wait(size, self.clock())) > 0:
                await sleep(left)
            if not self.paused or self.pause.until <= waited:
                return
            # A pause began while we waited: wait it out, then look at the window
            # again. Checking it before the pause and counting the send after
            # would let every request held by the pause go at once, past it.
            waited = self.pause.until
            await self.wait_pause(sleep)

    def refund(self, tokens: int, requests: bool = False) -> None:
        """Give back a reservation that was never used."""
        self.budgets.refund(tokens, requests, self.clock())

    def hold(self, seconds: float, now: float, why: str) -> None:
        """Hold every new attempt of this key for `seconds` (in-flight ones finish)."""
        until = now + seconds
        if self.pause.extend(until):
            self.budgets.hold(until, now)
            self.counters.slowed(f"{why}: paused {seconds:.1f}s", now)

    # -- after an attempt ------------------------------------------------------------------

    def succeeded(
        self,
        ticket: Ticket,
        usage: ModelUsage | None,
        headers: Mapping[str, str] | None,
        saturated: bool,
    ) -> None:
        """Count a successful attempt, reconcile its tokens and maybe grow."""
        now = self.clock()
        used = None if usage is None else usage.total_tokens
        self.counters.answered(False)
        self.counters.used(used or 0, now)
        budgets = self.budgets
        if ticket.guess and usage is not None and usage.input_tokens:
            budgets.calibration.learn(ticket.guess, usage.input_tokens, usage.output_tokens)
        budgets.settle(ticket.tokens, used, ticket.entry, now)
        if ticket.sent_at:
            self.inference.succeeded(ticket.sent_at, now)
        if headers is not None:
            self.learn(headers)
        if budgets.inferred_rpm and budgets.learned_rpm is not None:
            self.inference.probe(now)
        self.slots.grow(saturated)
        if self.stop.count:
            self.stop.succeeded()

    def failed(
        self, ticket: Ticket, decision: RetryDecision, headers: Mapping[str, str] | None
    ) -> bool:
        """Count a failed attempt. A rate limit cuts concurrency or the budget and
        pauses the key, unless it is sporadic (the headers show budget left):
        then only the request waits. Returns whether the key was left as it was."""
        limited = decision.kind == "rate_limit"
        self.counters.answered(limited)
        self.counters.failures += 1
        info = None if headers is None else read_headers(headers)
        if info is not None:
            self._learn(info)
        if not limited:
            return True
        now = self.clock()
        self.counters.rate_limit_hits += 1
        self.budgets.rejected(ticket.tokens, ticket.entry, now)
        if info is not None and self._sporadic(info, ticket.tokens):
            self.counters.retried_429s += 1
            return True
        self._rate_limited(ticket, decision.retry_after, now)
        return False

    def _sporadic(self, info: RateHeaders, tokens: int) -> bool:
        """Whether a 429 said there was budget left, and such 429s stay rare."""
        requests, left = info.remaining_requests, info.remaining_tokens
        if requests is None and left is None:
            return False
        if (requests is not None and requests < 1) or (left is not None and left < max(1, tokens)):
            return False
        return self.counters.limited_share < SPORADIC_SHARE

    def _rate_limited(self, ticket: Ticket, retry_after: float | None, now: float) -> None:
        episode = self.slots.episode(now)
        self.inference.limited(now, episode)
        # A budget (set by the user, learned from headers or inferred) paces the key:
        # cutting concurrency too would only bunch requests that already hold a
        # reservation behind fewer slots.
        budgets = self.budgets
        paced = budgets.active
        if not paced:
            if (cut := self.slots.cut(now)) is not None:
                self.counters.slowed(f"concurrency halved {cut[0]} -> {cut[1]} after a 429", now)
        elif episode:
            self.slots.cool(now)
        if episode:
            budgets.episode(now, cut=paced)
        if episode and not budgets.from_headers():
            self.inference.infer(ticket.sent_at or now, retry_after or 0.0, now)
        if retry_after is not None and retry_after > 0:
            if paced:
                # The budget already paces below the limit, and the provider's
                # window frees up as fast as we filled it: hold the key for one
                # request's worth of budget, not the whole Retry-After (the rejected
                # request itself still waits its Retry-After in the retry stage).
                retry_after = min(retry_after, budgets.one_request(ticket.tokens))
            self.hold(retry_after, now, "429 with Retry-After")

    def learn(self, headers: Mapping[str, str]) -> None:
        """Update budgets from the provider's x-ratelimit-* headers."""
        info = read_headers(headers)
        if info is not None:
            self._learn(info)

    def _learn(self, info: RateHeaders) -> None:
        now = self.clock()
        had = self.budgets.learn(info, now)
        if info.limit_requests and not self.budgets.inferred_rpm:
            self.inference.forget()
        if had is not None:
            # Without this the first wave, sent before any header arrived, would be
            # spent twice: once by us, and again by the provider's window. Requests
            # in flight count as one request each now; their tokens are charged
            # when their replies come back (they reserved none).
            done, tokens = self.counters.recent(now, RECENT)
            self.budgets.charge(had, done + self.slots.in_flight, tokens, now)
        if (wait := info.exhausted_for()) is not None and wait > 0:
            used_up = "request" if (info.remaining_requests or 1) <= 0 else "token"
            self.hold(wait, now, f"{used_up} budget used up (x-ratelimit-remaining 0)")

    # -- visibility ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """JSON-friendly snapshot for the progress display and the eval log."""
        now = self.clock()
        counters, budgets, limiter = self.counters, self.budgets, self.slots.limiter
        return {
            "key": public_key(self.name),
            "concurrency": limiter.limit,
            "adaptive": not self.slots.controller.fixed,
            "in_flight": limiter.in_flight,
            "peak_in_flight": limiter.peak,
            "requests": counters.requests,
            "rate_limit_hits": counters.rate_limit_hits,
            "retried_429s": counters.retried_429s,
            "failures": counters.failures,
            "pauses": self.pause.count,
            "paused_for": round(max(0.0, self.pause.until - now), 3),
            "tokens": counters.tokens,
            "tokens_per_minute": round(counters.tokens_per_minute(now), 1),
            "rpm": None if budgets.rpm is None else round(budgets.rpm.rate * 60, 1),
            "tpm": None if budgets.tpm is None else round(budgets.tpm.rate * 60, 1),
            "slowed": counters.current_reason(now),
        }


_keys: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ConnectionKey]]
_keys = weakref.WeakKeyDictionary()


def connection_key(
    key: str, start: int, clock: Clock = time.monotonic, maximum: int = DEFAULT_MAX
) -> ConnectionKey:
    """The running loop's ConnectionKey for `key`, created with `start` slots on first
    use (adapting up to `maximum`)."""
    loop = asyncio.get_running_loop()
    per_loop = _keys.get(loop)
    if per_loop is None:
        per_loop = _keys[loop] = {}
    state = per_loop.get(key)
    if state is None:
        # Shared through Redis when the shared-state setting is on (None: in process).
        parts = parts_for(key, start, clock, maximum)
        state = per_loop[key] = ConnectionKey(key, start, clock, maximum, parts)
    return state


def all_stats() -> list[dict[str, Any]]:
    """Stats of every key of the running event loop (of every live loop outside one)."""
    try:
        loops = [asyncio.get_running_loop()]
    except RuntimeError:
        loops = list(_keys.keys())
    return [state.stats() for loop in loops for state in _keys.get(loop, {}).values()]


def estimate_tokens(texts: list[str], max_tokens: int | None) -> int:
    """Tokens to reserve before a request: about 4 characters per token, plus 4 per
    message for the chat framing, plus `max_tokens` (the most the reply may use)."""
    return sum(len(t) for t in texts) // 4 + 4 * len(texts) + (max_tokens or 0)
