"""Fault injection for the mock OpenAI server: which fault a request gets, and how it is sent.

Kinds, in the order they are tried for each request (the first that fires wins):

    storm      a 429 burst: the request that starts it and every request for the
               next `storm_seconds` get 429 (with Retry-After = the storm's time
               left, or with no wait headers at all when `storm_retry_after` is off)
    sporadic   a lone 429 with Retry-After while the rate-limit headers show budget
               left (a provider's momentary overload, not a rate limit)
    error      a 500 answer
    reset      the connection is reset (TCP RST) without an answer
    hang       no answer until the client gives up or the server stops
    malformed  a 200 whose JSON body is cut short
    truncate   (streams) some chunks, then the connection closes without [DONE]
    trickle    chunks (or, without streaming, pieces of the body) `trickle_delay` apart

Draws are seeded per request body: the n-th request with a given body draws from
Random(seed, body, n), so a sample's faults (and the retries they cause) do not
depend on how concurrent requests interleave. Storms depend on the clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web

RATE_FIELDS = (
    "error_rate",
    "reset_rate",
    "hang_rate",
    "malformed_rate",
    "truncate_rate",
    "trickle_rate",
    "storm_rate",
    "sporadic_rate",
)
"""Fault probabilities (each 0..1)."""

MALFORMED_BODY = b'{"id": "chatcmpl-trunc", "choices": ['


@dataclass(slots=True)
class Faults:
    """Fault rates and their settings, drawn per request by `pick`."""

    error_rate: float = 0.0
    reset_rate: float = 0.0
    hang_rate: float = 0.0
    malformed_rate: float = 0.0
    truncate_rate: float = 0.0
    trickle_rate: float = 0.0
    trickle_delay: float = 0.05
    storm_rate: float = 0.0
    storm_seconds: float = 1.0
    storm_retry_after: bool = True
    sporadic_rate: float = 0.0
    seed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    """Faults injected so far, by kind."""
    _seen: dict[bytes, int] = field(default_factory=dict)
    _storm_until: float = 0.0

    def __post_init__(self) -> None:
        for name in RATE_FIELDS:
            rate = getattr(self, name)
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be within 0..1, got {rate}")
        for name in ("trickle_delay", "storm_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        """Whether any fault can fire."""
        return any(getattr(self, name) for name in RATE_FIELDS)

    def rng(self, raw: bytes) -> random.Random:
        """The draw for the next request with body `raw`."""
        key = hashlib.blake2b(raw, digest_size=16).digest()
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        return random.Random(self.seed.to_bytes(8, "little", signed=True) + key + n.to_bytes(8))

    def storm_left(self, rng: random.Random) -> float | None:
        """Seconds of 429 storm left for this request (a storm may start now), or None."""
        now = time.monotonic()
        if now >= self._storm_until and self.storm_rate and rng.random() < self.storm_rate:
            self._storm_until = now + self.storm_seconds
        if now < self._storm_until:
            self.counts["storm"] += 1
            return self._storm_until - now
        return None

    def pick(self, rng: random.Random, stream: bool) -> str | None:
        """The fault for one request (None: answer normally)."""
        kinds = ["sporadic", "error", "reset", "hang", "malformed"]
        if stream:
            kinds.append("truncate")
        kinds.append("trickle")
        for kind in kinds:
            rate = getattr(self, f"{kind}_rate")
            if rate and rng.random() < rate:
                self.counts[kind] += 1
                return kind
        return None


def storm_response(left: float, with_wait: bool) -> web.Response:
    """The 429 of a storm, with or without Retry-After (and no other wait hint)."""
    headers = {}
    if with_wait:
        headers = {"Retry-After": f"{left:.3f}", "retry-after-ms": str(max(1, int(left * 1000)))}
    return _rate_limited(
        "Rate limit reached: the server is overloaded. Please try again later.", headers
    )


SPORADIC_HEADERS = {
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "999999",
}
"""What a sporadic 429 says of the budget when the server enforces no limit: plenty left
(no stated limit, as an overloaded gateway in front of a provider answers)."""


def sporadic_response(retry_after: float, rate_headers: dict[str, str] | None) -> web.Response:
    """A lone 429 whose rate-limit headers show budget left (the server's own, or plenty)."""
    headers = {
        **(rate_headers or SPORADIC_HEADERS),
        "Retry-After": f"{retry_after:g}",
        "retry-after-ms": str(int(retry_after * 1000)),
    }
    return _rate_limited("The server is busy right now. Please try again shortly.", headers)


def _rate_limited(message: str, headers: dict[str, str]) -> web.Response:
    """A 429 in OpenAI's error shape."""
    error = {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    return web.Response(
        body=orjson.dumps({"error": error}),
        status=429,
        headers=headers,
        content_type="application/json",
    )


def reset(request: web.Request) -> web.StreamResponse:
    """Reset the connection (RST, no answer); the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN, as a crashed proxy does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=499)


async def sse(
    request: web.Request,
    chunks: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    delay: float = 0.0,
    cut: int | None = None,
) -> web.StreamResponse:
    """Send `chunks` as server-sent events ending in [DONE].

    `delay` spaces the chunks; with `cut`, only the first `cut` chunks are sent and
    the connection is then closed mid-body (no [DONE], no end of the chunked body).
    """
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **(headers or {}),
        }
    )
    await response.prepare(request)
    try:
        if not delay and cut is None:
            # Nothing spaces the chunks: one write (per-chunk writes cost the mock more
            # CPU than the client it measures).
            events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
            await response.write(b"".join(events) + b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        for i, chunk in enumerate(chunks):
            if cut is not None and i >= cut:
                break
            if delay and i:
                await asyncio.sleep(delay)
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if cut is not None:
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (e.g. its attempt timed out): nothing left to send
    return response


def truncation_point(chunks: list[dict[str, Any]], rng: random.Random) -> int:
    """How many chunks a truncated stream sends: at least one, never the finish_reason."""
    finish = next(
        (
            i
            for i, chunk in enumerate(chunks)
            if any(c.get("finish_reason") for c in chunk.get("choices") or ())
        ),
        len(chunks),
    )
    return rng.randint(1, max(1, finish - 1)) if finish > 1 else 1


async def trickle_json(
    request: web.Request, data: Any, delay: float, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """A JSON answer sent in four pieces, `delay` apart."""
    body = orjson.dumps(data)
    response = web.StreamResponse(headers={"Content-Type": "application/json", **(headers or {})})
    response.content_length = len(body)
    await response.prepare(request)
    step = max(1, -(-len(body) // 4))
    try:
        for start in range(0, len(body), step):
            if start:
                await asyncio.sleep(delay)
            await response.write(body[start : start + step])
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client gave up before the last piece
    return response


class RequestLog:
    """Appends one JSON line per request to a file (shared safely by forked workers).

    Lines: {"t": unix time, "path", "headers" (lower-cased), "body", "fault"}.
    Each line is one unbuffered O_APPEND write, so a reader sees whole lines only.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = open(self.path, "ab", buffering=0)  # noqa: SIM115

    def write(self, path: str, headers: dict[str, str], body: Any, fault: str | None) -> None:
        """Append one request."""
        if self._file is None:
            return
        line = {"t": time.time(), "path": path, "headers": headers, "body": body, "fault": fault}
        self._file.write(orjson.dumps(line, default=repr) + b"\n")

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a request log (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return out
