"""Anthropic failures -> RetryDecision.

HTTP statuses go through the shared table (429 rate limit with Retry-After;
408/409/5xx and 529 transient; other 4xx fatal). On top of it the error
`type` in the body wins: `overloaded_error` and `api_error` are retryable
whatever the status, `rate_limit_error` is a rate limit. The same types arrive
as `error` events in the middle of a stream, as AnthropicResponseError.
"""

from __future__ import annotations

from typing import Any

from gauge.model.api import FATAL, TRANSIENT, RetryDecision
from gauge.model.providers._http import HTTPStatusError, classify_http

_TRANSIENT_TYPES = frozenset({"overloaded_error", "api_error", "timeout_error"})


class AnthropicResponseError(Exception):
    """An `error` event in a stream, or a body that is not a Messages response."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def classify(ex: BaseException) -> RetryDecision:
    """The retry decision for an exception raised while calling Anthropic."""
    if isinstance(ex, AnthropicResponseError):
        return _by_type(ex.error_type, None) or FATAL
    if isinstance(ex, HTTPStatusError) and (by_type := _by_type(_error_type(ex.body), ex)):
        return by_type
    decision = classify_http(ex)
    if decision is not None:
        return decision
    return TRANSIENT if isinstance(ex, TimeoutError | ConnectionError) else FATAL


def _by_type(error_type: str | None, ex: HTTPStatusError | None) -> RetryDecision | None:
    retry_after = ex.retry_after if ex is not None else None
    if error_type == "rate_limit_error":
        return RetryDecision("rate_limit", retry_after)
    if error_type in _TRANSIENT_TYPES:
        return RetryDecision("transient", retry_after)
    return None


def _error_type(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        value = body["error"].get("type")
        return value if isinstance(value, str) else None
    return None
