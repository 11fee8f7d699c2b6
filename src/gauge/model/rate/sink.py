"""Where the shared HTTP client leaves each attempt's response headers.

The rate stage sets `response_headers` to a fresh one-item list around every
attempt; `providers/_http.py` stores the headers of the response it read there.
Providers stay translators: they never see this, and a provider that does not
use the shared client simply leaves the list empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

response_headers: ContextVar[list[Mapping[str, str]] | None] = ContextVar(
    "gauge_response_headers", default=None
)


def offer(headers: Mapping[str, str]) -> None:
    """Hand one response's headers to the attempt in progress, if it listens."""
    sink = response_headers.get()
    if sink is not None:
        sink.append(headers)
