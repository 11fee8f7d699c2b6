"""Bearer-token check: with an API key set, every route but /health needs it."""

from __future__ import annotations

import hmac

from gauge.serve.schemas import APIError

OPEN_PATHS = frozenset({"/health"})


def check(path: str, authorization: str | None, api_key: str | None) -> None:
    """Raise a 401 APIError unless `authorization` is `Bearer <api_key>` (or no key is set)."""
    if api_key is None or path in OPEN_PATHS:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), api_key):
        raise APIError(
            "invalid or missing API key: send the header 'Authorization: Bearer <key>'",
            status=401,
            code="invalid_api_key",
        )
