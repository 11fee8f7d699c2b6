"""Gemini / Vertex failures -> RetryDecision.

Google puts a gRPC status in the error body. RESOURCE_EXHAUSTED (HTTP 429) is a
rate limit; its wait comes from Retry-After or the body's RetryInfo
`retryDelay`. UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED and ABORTED are
transient, like 5xx and connection errors; other 4xx are fatal.
"""

from __future__ import annotations

from typing import Any

from gauge.model.api import FATAL, TRANSIENT, RetryDecision
from gauge.model.durations import parse_duration
from gauge.model.providers._http import HTTPStatusError, classify_http

_TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})


class GoogleResponseError(Exception):
    """An error object inside a 200 answer (stream chunks), or an unreadable body."""

    def __init__(self, status: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> GoogleResponseError:
        error = body.get("error") or {}
        if not isinstance(error, dict):
            return cls("UNKNOWN", str(error))
        return cls(
            str(error.get("status") or "UNKNOWN"),
            str(error.get("message") or "error"),
            retry_delay(body),
        )


def classify(ex: BaseException) -> RetryDecision:
    """The retry decision for an exception raised while calling Gemini or Vertex."""
    if isinstance(ex, GoogleResponseError):
        return _by_status(ex.status, ex.retry_after) or FATAL
    if isinstance(ex, HTTPStatusError):
        status = _status(ex.body)
        decision = _by_status(status, ex.retry_after or retry_delay(ex.body))
        if decision is not None:
            return decision
    decision = classify_http(ex)
    if decision is not None:
        return decision
    return TRANSIENT if isinstance(ex, TimeoutError | ConnectionError) else FATAL


def retry_delay(body: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (`"retryDelay": "30s"`), if any."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    for detail in body["error"].get("details") or ():
        if isinstance(detail, dict) and isinstance(detail.get("retryDelay"), str):
            return parse_duration(detail["retryDelay"])
    return None


def _by_status(status: str | None, retry_after: float | None) -> RetryDecision | None:
    if status == "RESOURCE_EXHAUSTED":
        return RetryDecision("rate_limit", retry_after)
    if status in _TRANSIENT_STATUSES:
        return RetryDecision("transient", retry_after)
    return None


def _status(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        value = body["error"].get("status")
        return value if isinstance(value, str) else None
    return None
