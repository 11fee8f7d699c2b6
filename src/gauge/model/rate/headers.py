"""Rate limits learned from response headers.

OpenAI and the services that copy it send, on every answer:

    x-ratelimit-limit-requests / x-ratelimit-limit-tokens          budget per minute
    x-ratelimit-remaining-requests / x-ratelimit-remaining-tokens  left right now
    x-ratelimit-reset-requests / x-ratelimit-reset-tokens          time until refilled ("6m0s")

The limits set the key's RPM/TPM buckets (at `SAFETY` / `TOKEN_SAFETY` of the
stated value, so clock skew and the provider's shorter enforcement windows do
not produce 429s);
a remaining count of zero pauses the key until its reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gauge.model.durations import parse_duration

SAFETY = 0.97
"""Fraction of a stated request limit we plan to use."""
TOKEN_SAFETY = 1.0
"""Fraction of a stated token limit the token bucket refills at. The bucket
only paces the average; the margin under the limit is kept by the mirror of the
provider's window (`rate.window`, `keys.WINDOW_FILL`), which, unlike the bucket,
cannot be overrun by refunds."""


@dataclass(slots=True)
class RateHeaders:
    """What one response said about the key's limits (None: not sent)."""

    limit_requests: float | None = None
    limit_tokens: float | None = None
    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None

    def exhausted_for(self) -> float | None:
        """Seconds to pause when a budget is used up, else None."""
        waits = [
            reset
            for remaining, reset in (
                (self.remaining_requests, self.reset_requests),
                (self.remaining_tokens, self.reset_tokens),
            )
            if remaining is not None and remaining <= 0 and reset is not None
        ]
        return max(waits) if waits else None


def read_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """The rate-limit headers in `headers` (lower-case or case-insensitive), or None."""
    get = headers.get  # called on every response: plain lookups, no generators
    limit_requests = get("x-ratelimit-limit-requests")
    limit_tokens = get("x-ratelimit-limit-tokens")
    remaining_requests = get("x-ratelimit-remaining-requests")
    remaining_tokens = get("x-ratelimit-remaining-tokens")
    if (limit_requests or limit_tokens or remaining_requests or remaining_tokens) is None:
        return None
    return RateHeaders(
        _number(limit_requests),
        _number(limit_tokens),
        _number(remaining_requests),
        _number(remaining_tokens),
        reset_requests=_duration(headers.get("x-ratelimit-reset-requests")),
        reset_tokens=_duration(headers.get("x-ratelimit-reset-tokens")),
    )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    return parse_duration(text)
