"""Server-sent events: each chunk is one whole `data:` event; the stream ends with [DONE]."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def event(data: Any) -> bytes:
    """One SSE event holding `data` as JSON."""
    return b"data: " + orjson.dumps(data) + b"\n\n"
