"""Mistral failures -> RetryDecision.

The shared HTTP table applies: 429 is a rate limit (Retry-After honoured),
408/409/5xx and connection errors are transient, other 4xx (400, 401, 422
validation errors) are fatal with Mistral's own message. An unreadable 200
answer or an error object inside a stream is transient.
"""

from __future__ import annotations

from gauge.model.api import FATAL, TRANSIENT, RetryDecision
from gauge.model.providers._http import HTTPStatusError, classify_http


class MistralResponseError(Exception):
    """A 200 answer that is not a chat completion, or an error inside a stream."""


def classify(ex: BaseException) -> RetryDecision:
    """The retry decision for an exception raised while calling Mistral."""
    if isinstance(ex, MistralResponseError):
        return TRANSIENT
    decision = classify_http(ex)
    if decision is not None:
        return decision
    return TRANSIENT if isinstance(ex, TimeoutError | ConnectionError) else FATAL


def with_message(ex: HTTPStatusError) -> HTTPStatusError:
    """`ex`, or a copy whose message spells out Mistral's validation details."""
    body = ex.body
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("message"), dict):
        detail = body["message"].get("detail", detail)
    if not isinstance(detail, list):
        return ex
    parts = [
        f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg', '')}"
        for item in detail
        if isinstance(item, dict)
    ]
    if not parts:
        return ex
    return HTTPStatusError(ex.status, "; ".join(parts), body, ex.headers)
