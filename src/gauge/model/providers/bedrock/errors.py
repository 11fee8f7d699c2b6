"""Bedrock errors: AWS error codes (from headers, body or stream) -> RetryDecision.

AWS names the error in the `x-amzn-ErrorType` header (`Code:namespace`), in the
body's `__type`, or, inside an event stream, in `:exception-type`. The code
decides the retry kind; the HTTP status is the fallback for codes we do not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gauge.model.api import FATAL, TRANSIENT, RetryDecision
from gauge.model.providers._http import HTTPStatusError, classify_http

RATE_LIMIT_CODES = frozenset({"ThrottlingException", "TooManyRequestsException"})
TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailableException",
        "ModelNotReadyException",  # sent with 429, but it means "loading", not "slow down"
        "InternalServerException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
    }
)


class BedrockError(HTTPStatusError):
    """Bedrock refused or failed a request; `code` is AWS's error name, the message AWS's own."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, body, headers)
        self.code = code
        self.args = (f"bedrock {code or 'error'} (HTTP {status}): {message}",)


def from_response(status: int, raw: bytes, headers: Mapping[str, str]) -> BedrockError:
    """The error for a non-2xx Converse answer."""
    import orjson

    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = raw.decode(errors="replace")
    lowered = {k.lower(): v for k, v in headers.items()}
    code = lowered.get("x-amzn-errortype", "").split(":")[0]
    message = ""
    if isinstance(body, dict):
        code = code or str(body.get("__type", "")).rpartition("#")[2]
        message = str(body.get("message") or body.get("Message") or "")
    elif isinstance(body, str):
        message = " ".join(body.split())[:500]
    return BedrockError(status, code, message or "no error message in the response", body, lowered)


def from_stream(exception_type: str, payload: bytes) -> BedrockError:
    """The error for an exception event inside a ConverseStream answer."""
    import orjson

    try:
        body = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        body = {"message": payload.decode(errors="replace")}
    # Stream events spell codes camelCase (throttlingException); headers spell them Pascal.
    code = exception_type[:1].upper() + exception_type[1:]
    message = (
        str(body.get("message") or body.get("Message") or "") if isinstance(body, dict) else ""
    )
    return BedrockError(200, code, message or "error event in the stream", body)


def classify(ex: BaseException) -> RetryDecision:
    """Throttling -> rate_limit; unavailable, not ready, internal, 5xx -> transient; else fatal."""
    if isinstance(ex, BedrockError):
        if ex.code in RATE_LIMIT_CODES:
            return RetryDecision("rate_limit", ex.retry_after)
        if ex.code in TRANSIENT_CODES:
            return RetryDecision("transient", ex.retry_after)
        if ex.status == 200:  # an unknown error event inside a stream
            return FATAL
    decision = classify_http(ex)
    if decision is not None:
        return decision
    if isinstance(ex, TimeoutError | ConnectionError):
        return TRANSIENT
    return FATAL
