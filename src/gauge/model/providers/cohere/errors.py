"""Cohere HTTP errors -> RetryDecision."""

from __future__ import annotations

from gauge.model.api import FATAL, RetryDecision
from gauge.model.providers._http import HTTPStatusError, classify_http


class CohereError(HTTPStatusError):
    """Cohere answered with a non-2xx status; the message is Cohere's own."""

    def __init__(self, ex: HTTPStatusError) -> None:
        super().__init__(ex.status, ex.message, ex.body, ex.headers)
        self.args = (f"cohere HTTP {ex.status}: {ex.message}",)


def classify(ex: BaseException) -> RetryDecision:
    """429 (trial and production limits) -> rate_limit; 5xx, timeouts, resets -> transient."""
    decision = classify_http(ex)
    if decision is not None:
        return decision
    if isinstance(ex, TimeoutError | ConnectionError):
        return RetryDecision("transient")
    return FATAL
