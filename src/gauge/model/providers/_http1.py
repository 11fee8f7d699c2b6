"""A lean HTTP/1.1 client for JSON POSTs to plain-http servers (local and self-hosted).

vLLM, `gauge serve`, Ollama and other servers on the local network answer in
milliseconds, so the client's own CPU per request decides how many samples per
second an eval gets. aiohttp's client spends ~0.15 ms of CPU per request (URL
and header handling, cookie jar, tracing hooks, a response object); this one
writes the request in one `write`, parses the reply in its protocol callback and
keeps connections alive: ~0.05 ms.

It speaks only what those servers answer: HTTP/1.1 (or 1.0) with a
Content-Length, chunked, or read-until-close body, optionally gzip/deflate
encoded. `https://` URLs, streams and GETs stay on aiohttp (`_http.py`), where
network latency dwarfs the client's CPU and TLS, redirects and the rest matter.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from collections.abc import Mapping
from typing import cast
from urllib.parse import quote, urlencode, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from gauge.errors import ConfigError

USER_AGENT = "gauge (python http/1.1)"
PATH_SAFE = "/:@!$&'()*+,;=-._~%"
"""Characters a path keeps as they are (RFC 3986 pchar, and '%' of existing escapes)."""
MAX_HEAD = 64 * 1024
"""Largest status line + headers accepted (aiohttp's default limit is 8190 per line)."""


def header_break(headers: Mapping[str, str]) -> str | None:
    """The name of a header whose value has a line break (it would split the request)."""
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            return name
    return None


def header_error(name: str) -> ConfigError:
    """The one-line error for a header with a line break."""
    return ConfigError(
        f"the {name} header contains a line break: remove it (an API key read "
        "from a file or pasted often ends with one)"
    )


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read, or the connection dropped."""


class _Reply:
    __slots__ = ("body", "close", "headers", "status")

    def __init__(
        self, status: int, headers: CIMultiDictProxy[str], body: bytes, close: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.close = close


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one reply at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.alive = True
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Reply] | None = None
        self._head: tuple[int, CIMultiDictProxy[str], int | None, bool, bool] | None = None
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not always an asyncio.Transport instance (uvloop's are not).
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._eof = True
        self._finish_or_fail(exc)

    def eof_received(self) -> bool:
        self._eof = True
        self.alive = False
        self._finish_or_fail(None)
        return False

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for (or after a reply): the connection is out of step.
            self.alive = False
            if self.transport is not None:
                self.transport.close()
            return
        self._buffer += data
        self._parse()

    def request(self, data: bytes) -> asyncio.Future[_Reply]:
        """Send a whole request; the future gets its reply."""
        assert self.transport is not None
        if self.transport.is_closing():  # a write would be dropped, and never answered
            raise ProtocolError("the connection closed before the request was sent")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._head = None
        self._buffer.clear()
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        """Drop the connection (not reusable)."""
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    # -- parsing ------------------------------------------------------------------------

    def _parse(self) -> None:
        try:
            if self._head is None and not self._read_head():
                return
            self._read_body()
        except ProtocolError as ex:
            self._fail(ex)

    def _read_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ProtocolError(f"response headers longer than {MAX_HEAD} bytes")
            return False
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        status = int(code)
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line: {line[:100]!r}")
            headers.add(name.strip(), value.strip())
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length: int | None = None
        if not chunked and (declared := headers.get("content-length")) is not None:
            if not declared.isdigit():
                raise ProtocolError(f"bad Content-Length {declared!r}")
            length = int(declared)
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._head = None
            return self._read_head() if self._buffer else False
        if length is None and not chunked:
            close = True  # the body runs until the server closes
        self._head = (status, CIMultiDictProxy(headers), length, chunked, close)
        return True

    def _read_body(self) -> None:
        assert self._head is not None
        status, headers, length, chunked, close = self._head
        buffer = self._buffer
        if chunked:
            body = _dechunk(buffer)
            if body is None:
                return
        elif length is not None:
            if len(buffer) < length:
                return
            body = bytes(buffer[:length])
            del buffer[:length]
        else:
            if not self._eof:
                return
            body = bytes(buffer)
            buffer.clear()
        if buffer:  # more than one reply's bytes: out of step, do not reuse
            close = True
        encoding = headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            try:
                body = zlib.decompress(body, 47 if encoding == "gzip" else zlib.MAX_WBITS)
            except zlib.error as ex:
                raise ProtocolError(f"cannot decode the {encoding} body: {ex}") from None
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"unsupported Content-Encoding {encoding!r}")
        if close:
            self.close()
        waiter, self._waiter, self._head = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_result(_Reply(status, headers, body, close))

    def _finish_or_fail(self, exc: Exception | None) -> None:
        if self._waiter is None:
            return
        if self._head is not None and self._head[2] is None and not self._head[3]:
            self._parse()  # a read-until-close body is complete now
            if self._waiter is None:
                return
        reason = f": {exc}" if exc else ""
        self._fail(ProtocolError(f"the server closed the connection mid-reply{reason}"))

    def _fail(self, ex: Exception) -> None:
        self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ex)


def _dechunk(buffer: bytearray) -> bytes | None:
    """The whole body of a chunked reply if it has all arrived (consumed), else None.

    Called on every read: it only walks the chunk headers until the body is
    complete, and copies the chunks once, at the end.
    """
    spans: list[tuple[int, int]] = []
    at = 0
    while True:
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return None
        size_text = bytes(buffer[at:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        start = end + 2
        if size == 0:
            # Trailers (usually none) end with an empty line.
            if buffer[start : start + 2] == b"\r\n":
                consumed = start + 2
            elif (trailer_end := buffer.find(b"\r\n\r\n", end)) >= 0:
                consumed = trailer_end + 4
            else:
                return None
            body = b"".join(buffer[a : a + n] for a, n in spans)
            del buffer[:consumed]
            return body
        if len(buffer) < start + size + 2:
            return None
        spans.append((start, size))
        at = start + size + 2


class Http1Pool:
    """Keep-alive connections to one plain-http origin, for JSON POSTs."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        host_header = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        if parts.port is not None and parts.port != 80:
            host_header += f":{self.port}"
        fixed = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*"}
        fixed.update(headers)
        fixed["Content-Type"] = "application/json"
        if (name := header_break(fixed)) is not None:
            raise header_error(name)
        self._fixed = "\r\n".join(f"{k}: {v}" for k, v in fixed.items()).encode("latin-1")
        # Connections belong to the event loop that made them (the sync API runs its
        # own loop in a thread): one idle stack per loop.
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Connection]]
        self._idle = weakref.WeakKeyDictionary()

    async def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Reply:
        """POST `body` (JSON) to `path` under the base URL; the whole reply."""
        target = quote(f"{self._prefix}/{path.lstrip('/')}", safe=PATH_SAFE)
        if params:
            target += "?" + urlencode(params)
        head = b"POST " + target.encode() + b" HTTP/1.1\r\n" + self._fixed
        if headers:
            if (name := header_break(headers)) is not None:
                raise header_error(name)
            extra = "".join(f"\r\n{k}: {v}" for k, v in headers.items())
            head += extra.encode("latin-1")
        data = head + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        loop = asyncio.get_running_loop()
        idle = self._idle.get(loop)
        if idle is None:
            idle = self._idle[loop] = []
        connection = None
        while idle:
            candidate = idle.pop()  # the most recently used is the least likely stale
            transport = candidate.transport
            if candidate.alive and transport is not None and not transport.is_closing():
                connection = candidate
                break
        if connection is None:
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
        try:
            reply = await connection.request(data)
        except BaseException:
            connection.close()  # cancelled or failed mid-request: never reuse it
            raise
        if not reply.close and connection.alive:
            idle.append(connection)
        return reply

    def close(self) -> None:
        """Close the running loop's idle connections (others go with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for connection in self._idle.pop(loop, []):
            connection.close()
