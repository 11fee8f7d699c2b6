"""What a connection key did: attempts, rate limits, tokens per minute, and why it
last slowed down (in words, for the live display and the eval log)."""

from __future__ import annotations

from collections import deque

WINDOW = 60.0
"""Seconds of history behind the tokens-per-minute figure."""
REASON_SHOWN = 10.0
"""Seconds a slow-down's reason stays in the stats after it happened."""
LIMITED_WEIGHT = 0.05
"""Weight of each answer in the moving share of answers that were 429s."""


class KeyCounters:
    """Counters of one connection key."""

    __slots__ = (
        "_window",
        "_window_tokens",
        "failures",
        "limited_share",
        "rate_limit_hits",
        "reason",
        "reason_at",
        "requests",
        "retried_429s",
        "started",
        "successes",
        "tokens",
    )

    def __init__(self, now: float) -> None:
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.rate_limit_hits = 0
        self.retried_429s = 0
        """429s that came with budget left: the request was retried, the key not slowed."""
        self.tokens = 0
        self.limited_share = 0.0
        """Moving share of answers that were 429s (sporadic ones stay rare)."""
        self.reason: str | None = None
        self.reason_at = float("-inf")
        self.started = now
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0

    def answered(self, limited: bool) -> None:
        """Count one attempt's answer."""
        self.requests += 1
        self.limited_share += LIMITED_WEIGHT * (float(limited) - self.limited_share)

    def used(self, tokens: int, now: float) -> None:
        """Count the tokens of one success."""
        self.successes += 1
        self.tokens += tokens
        window = self._window
        window.append((now, tokens))
        self._window_tokens += tokens
        while window and now - window[0][0] > WINDOW:
            self._window_tokens -= window.popleft()[1]

    def recent(self, now: float, seconds: float) -> tuple[int, int]:
        """(successes, tokens) of the last `seconds`."""
        done, tokens = 0, 0
        for at, used in reversed(self._window):
            if now - at > seconds:
                break
            done += 1
            tokens += used
        return done, tokens

    def slowed(self, reason: str, now: float) -> None:
        """Say why the key slowed down at `now`."""
        self.reason, self.reason_at = reason, now

    def current_reason(self, now: float) -> str | None:
        """The last slow-down's reason, while it is recent."""
        return self.reason if now - self.reason_at <= REASON_SHOWN else None

    def tokens_per_minute(self, now: float) -> float:
        """Tokens used over the last minute (scaled up while younger than a minute)."""
        while self._window and now - self._window[0][0] > WINDOW:
            self._window_tokens -= self._window.popleft()[1]
        span = min(WINDOW, max(now - self.started, 1.0))
        return self._window_tokens * 60.0 / span
