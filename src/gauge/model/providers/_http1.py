"""A lean HTTP/1.1 client for POSTs to plain-http servers (local and self-hosted).

vLLM, `gauge serve`, Ollama and other servers on the local network answer in
milliseconds, so the client's own CPU per request decides how many samples per
second an eval gets. aiohttp's client spends ~0.15 ms of CPU per request (URL
and header handling, cookie jar, tracing hooks, a response object); this one
writes the request in one `write`, parses the reply in its protocol callback and
keeps connections alive: ~0.05 ms.

`Http1Pool.post` reads a whole JSON reply; `Http1Pool.stream` reads a 2xx reply
as server-sent events, decoded in the protocol callback as the bytes arrive: a
streamed chat call costs ~0.2 ms of CPU here (most of it the socket calls) and
~0.4 ms on aiohttp's line reader.

It speaks only what those servers answer: HTTP/1.1 (or 1.0) with a
Content-Length, chunked, or read-until-close body, optionally gzip/deflate
encoded (streams too, decoded incrementally: `_http1_body.py`). `https://` URLs and GETs stay on
aiohttp (`_http.py`), where network latency dwarfs the client's CPU and TLS,
redirects and the rest matter.

Through an http:// proxy (`proxy=`) it is a forward-proxy client: connections
go to the proxy, each request names its absolute URL (`POST http://host/path
HTTP/1.1`, RFC 9112 3.2.2) and carries the proxy's Proxy-Authorization.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, urlencode, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from gauge.errors import ConfigError
from gauge.model.providers._http1_body import MAX_HEAD, ProtocolError, SseBody, dechunk

if TYPE_CHECKING:
    from gauge.model.providers._proxy import Proxy

USER_AGENT = "gauge (python http/1.1)"
PATH_SAFE = "/:@!$&'()*+,;=-._~%"
"""Characters a path keeps as they are (RFC 3986 pchar, and '%' of existing escapes)."""
MAX_UNREAD = 256 * 1024
"""Stream bytes read but not taken by the consumer at which reading pauses."""
DRAIN_SECONDS = 5.0
"""How long a stream that ended at [DONE] may take to finish its body before its
connection is dropped rather than reused."""
MID_STREAM = "the server closed the connection mid-stream{}: response payload is not completed"
"""The error for a stream cut short (aiohttp's words, which retry logs and tests know)."""


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
    """One keep-alive connection; parses one reply at a time (whole, or as a stream)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.alive = True
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Reply] | None = None
        self._head: tuple[int, CIMultiDictProxy[str], int | None, bool, bool] | None = None
        self._eof = False
        self._stream = False  # the request in flight reads a 2xx body as events
        self._sse: SseBody | None = None  # set once a streamed body starts
        self._wake: asyncio.Future[None] | None = None  # the stream's consumer waits
        self._error: ProtocolError | None = None
        self._unread = 0  # stream bytes read since the consumer last took events
        self._paused = False
        self._close_after = False  # the streamed reply cannot be followed by another
        self._release: tuple[list[_Connection], set[_Connection]] | None = None
        self._drain: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not always an asyncio.Transport instance (uvloop's are not).
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._eof = True
        if self._sse is not None:
            self._stream_eof(exc)
        else:
            self._finish_or_fail(exc)

    def eof_received(self) -> bool:
        self._eof = True
        self.alive = False
        if self._sse is not None:
            self._stream_eof(None)
        else:
            self._finish_or_fail(None)
        return False

    def data_received(self, data: bytes) -> None:
        if self._sse is not None:
            self._stream_data(data)
            return
        if self._waiter is None:
            # Bytes nobody asked for (or after a reply): the connection is out of step.
            self.alive = False
            if self.transport is not None:
                self.transport.close()
            return
        self._buffer += data
        self._parse()

    def request(self, data: bytes, stream: bool = False) -> asyncio.Future[_Reply]:
        """Send a whole request; the future gets its reply.

        With `stream`, a 2xx reply comes without its body, which `events` then
        reads; other statuses come whole.
        """
        assert self.transport is not None
        if self.transport.is_closing():  # a write would be dropped, and never answered
            raise ProtocolError("the connection closed before the request was sent")
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._head = None
        self._stream = stream
        self._sse = None
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
            if not (self._stream and self._start_stream()):
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
            body = dechunk(buffer)
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

    # -- streams ------------------------------------------------------------------------

    def _start_stream(self) -> bool:
        """Read a 2xx body as events from now on (False: another status, read whole)."""
        assert self._head is not None
        status, headers, length, chunked, close = self._head
        if not 200 <= status < 300:
            return False
        encoding = headers.get("content-encoding", "").lower()
        self._sse = SseBody(chunked, length, encoding)
        self._close_after = close
        self._error = None
        self._unread = 0
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(_Reply(status, headers, b"", close))
        if self._buffer:  # the first body bytes came with the head
            data = bytes(self._buffer)
            self._buffer.clear()
            self._stream_data(data)
        elif self._sse.complete:  # an empty body
            self._body_ended()
        return True

    def _stream_data(self, data: bytes) -> None:
        sse = self._sse
        assert sse is not None
        try:
            sse.feed(data)
        except ProtocolError as ex:
            self._stream_error(ex)
            return
        if sse.complete:
            self._body_ended()
        elif not sse.done:
            self._unread += len(data)
            if self._unread > MAX_UNREAD and not self._paused and self.transport is not None:
                # The consumer is behind: let TCP push back rather than buffer without end.
                self._paused = True
                self.transport.pause_reading()
        if (sse.events or sse.complete) and self._wake is not None:
            self._wake_up()

    def _stream_eof(self, exc: Exception | None) -> None:
        sse = self._sse
        assert sse is not None
        if sse.complete:
            return
        if sse.until_close and exc is None:  # the end of a read-until-close body
            self._stream_data(b"")
            return
        reason = f" ({exc})" if exc else ""
        self._stream_error(ProtocolError(MID_STREAM.format(reason)))

    def _stream_error(self, ex: ProtocolError) -> None:
        if self._error is None:
            self._error = ex
        self._stop_draining()
        self.close()
        self._wake_up()

    def _wake_up(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _body_ended(self) -> None:
        assert self._sse is not None
        if self._sse.extra:
            self._close_after = True  # bytes after the body: out of step
        if self._close_after:
            self.close()
        release = self._release
        if release is not None:  # the consumer finished at [DONE]: reuse it now
            self._stop_draining()
            self._give_back(release[0])

    def _stop_draining(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        if self._release is not None:
            self._release[1].discard(self)
            self._release = None

    def _give_back(self, idle: list[_Connection]) -> None:
        transport = self.transport
        if self.alive and not self._close_after and transport and not transport.is_closing():
            self._sse = None
            self._stream = False
            self._resume()  # never idle with reading paused: the next reply would hang
            idle.append(self)
        else:
            self.close()

    def _resume(self) -> None:
        self._unread = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    async def events(self) -> list[bytes]:
        """The events of the streamed body read since the last call, waiting for one;
        [] once it ended ([DONE] or the body's end). A cut stream raises ProtocolError."""
        sse = self._sse
        assert sse is not None
        while True:
            if sse.events:
                batch, sse.events = sse.events, []
                self._resume()
                return batch
            if sse.done or sse.complete:
                return []
            if self._error is not None:
                raise self._error
            self._resume()
            self._wake = wake = self._loop.create_future()
            await wake

    def finish(self, idle: list[_Connection], draining: set[_Connection], ended: bool) -> None:
        """The consumer is done with the stream. Reuse the connection if it read the
        stream to its end and the body ended cleanly; drop it otherwise."""
        sse = self._sse
        if not ended or sse is None or self._error is not None or self._close_after:
            self.close()
        elif sse.complete:
            self._give_back(idle)
        elif self.alive:
            # [DONE] came before the body's end (usually a read away): join the idle
            # stack when it arrives; drop the connection if it does not.
            self._release = (idle, draining)
            draining.add(self)
            self._drain = self._loop.call_later(DRAIN_SECONDS, self.abandon)
            self._resume()
        else:
            self.close()

    def abandon(self) -> None:
        """Stop waiting for the end of a finished stream's body: drop the connection."""
        self._stop_draining()
        self.close()


class SseStream:
    """A streamed reply (`Http1Pool.stream`): its status and headers, then its events.

    A non-2xx reply comes whole (`body`) and has no events. `close` when done: the
    connection is reused only if the events were read to their end.
    """

    __slots__ = ("_connection", "_draining", "_ended", "_idle", "body", "headers", "status")

    def __init__(
        self,
        reply: _Reply,
        connection: _Connection | None,
        idle: list[_Connection],
        draining: set[_Connection],
    ) -> None:
        self.status = reply.status
        self.headers = reply.headers
        self.body = reply.body
        self._connection = connection
        self._idle = idle
        self._draining = draining
        self._ended = connection is None

    async def events(self) -> list[bytes]:
        """The data of the events that arrived since the last call (waiting for at
        least one), without [DONE]; [] at the end. Raises ProtocolError if the
        server closes the connection mid-stream."""
        if self._connection is None:
            return []
        batch = await self._connection.events()
        if not batch:
            self._ended = True
        return batch

    def close(self) -> None:
        """Done: give the connection back if the stream was read to its end, else drop it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish(self._idle, self._draining, self._ended)


class Http1Pool:
    """Keep-alive connections to one plain-http origin, for JSON POSTs and SSE streams;
    through `proxy` (an http:// forward proxy) when given."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], proxy: Proxy | None = None
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        host_header = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        if parts.port is not None and parts.port != 80:
            host_header += f":{self.port}"
        # Where connections go: the origin, or the proxy (then targets are absolute URLs).
        self._address = (self.host, self.port) if proxy is None else (proxy.host, proxy.port)
        self._origin = "" if proxy is None else f"http://{host_header}"
        fixed = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*"}
        if proxy is not None and proxy.authorization is not None:
            fixed["Proxy-Authorization"] = proxy.authorization
        fixed.update(headers)
        fixed["Content-Type"] = "application/json"
        if (name := header_break(fixed)) is not None:
            raise header_error(name)
        self._fixed = _header_lines(fixed)
        # As aiohttp's stream_sse sent it: the client's own Accept gives way.
        sse = {k: v for k, v in fixed.items() if k.lower() != "accept"}
        self._fixed_sse = _header_lines({**sse, "Accept": "text/event-stream"})
        # Connections belong to the event loop that made them (the sync API runs its
        # own loop in a thread): per loop, an idle stack and the streams still
        # finishing their body after [DONE].
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Connection]]
        self._idle = weakref.WeakKeyDictionary()
        self._draining: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[_Connection]]
        self._draining = weakref.WeakKeyDictionary()

    async def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Reply:
        """POST `body` (JSON) to `path` under the base URL; the whole reply."""
        data = self._request(self._fixed, path, body, headers, params)
        connection, idle = await self._checkout()
        try:
            reply = await connection.request(data)
        except BaseException:
            connection.close()  # cancelled or failed mid-request: never reuse it
            raise
        if not reply.close and connection.alive:
            idle.append(connection)
        return reply

    async def stream(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> SseStream:
        """POST `body` (JSON) asking for server-sent events; the reply's status and
        headers once they arrive, its events then from `SseStream.events`.

        A non-2xx reply is read whole (`SseStream.body`). Close the SseStream when
        done with it: its connection is reused only if the stream was read to its end.
        """
        data = self._request(self._fixed_sse, path, body, headers, params)
        connection, idle = await self._checkout()
        try:
            reply = await connection.request(data, stream=True)
        except BaseException:
            connection.close()  # cancelled or failed before the head: never reuse it
            raise
        draining = self._draining.get(connection._loop)
        if draining is None:
            draining = self._draining[connection._loop] = set()
        if 200 <= reply.status < 300:
            return SseStream(reply, connection, idle, draining)
        if not reply.close and connection.alive:
            idle.append(connection)
        return SseStream(reply, None, idle, draining)

    def _request(
        self,
        fixed: bytes,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
    ) -> bytes:
        target = self._origin + quote(f"{self._prefix}/{path.lstrip('/')}", safe=PATH_SAFE)
        if params:
            target += "?" + urlencode(params)
        head = b"POST " + target.encode() + b" HTTP/1.1\r\n" + fixed
        if headers:
            if (name := header_break(headers)) is not None:
                raise header_error(name)
            extra = "".join(f"\r\n{k}: {v}" for k, v in headers.items())
            head += extra.encode("latin-1")
        return head + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    async def _checkout(self) -> tuple[_Connection, list[_Connection]]:
        """A live idle connection of the running loop, or a new one; and the loop's idle stack."""
        loop = asyncio.get_running_loop()
        idle = self._idle.get(loop)
        if idle is None:
            idle = self._idle[loop] = []
        while idle:
            candidate = idle.pop()  # the most recently used is the least likely stale
            transport = candidate.transport
            if candidate.alive and transport is not None and not transport.is_closing():
                return candidate, idle
        _, connection = await loop.create_connection(_Connection, *self._address)
        return connection, idle

    def close(self) -> None:
        """Close the running loop's idle connections (others go with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for connection in self._idle.pop(loop, []):
            connection.close()
        for connection in list(self._draining.pop(loop, ())):
            connection.abandon()


def _header_lines(headers: Mapping[str, str]) -> bytes:
    return "\r\n".join(f"{k}: {v}" for k, v in headers.items()).encode("latin-1")
