"""Reply bodies of the lean HTTP/1.1 client (`_http1.py`), decoded as bytes arrive:
a whole chunked body (`_dechunk`), and a streamed body split into server-sent
events (`SseBody`). Pure byte handling, no I/O: the connection feeds them.
"""

from __future__ import annotations

import zlib

MAX_HEAD = 64 * 1024
"""Largest status line + headers, or chunk header, accepted (aiohttp's limit is 8190
per line)."""


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read, or the connection dropped."""


def dechunk(buffer: bytearray) -> bytes | None:
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


class SseBody:
    """A streamed body, decoded as it arrives (framing, encoding) and split into events.

    Server-sent events: `data:` lines (a multi-line event's joined with \\n) until
    a blank line; \\r\\n, \\n or \\r line ends; comments and other fields ignored.
    """

    __slots__ = (
        "_chunked",
        "_crlf",
        "_inflate",
        "_left",
        "_need",
        "_raw",
        "_text",
        "complete",
        "done",
        "events",
        "extra",
    )

    def __init__(self, chunked: bool, length: int | None, encoding: str) -> None:
        self.events: list[bytes] = []  # data of the events not taken yet
        self.done = False  # [DONE] came: later events are dropped
        self.complete = length == 0  # the whole body arrived
        self.extra = False  # bytes after the body: the connection is out of step
        self._chunked = chunked
        self._left = length  # Content-Length bytes still to come; None: until close
        self._need = 0  # bytes of the current chunk still to come
        self._crlf = False  # a chunk's data arrived: its CRLF is next
        self._raw = b""  # the start of a chunk header not complete yet
        self._text = bytearray()  # decoded body not split into events yet (an event's start)
        self._inflate: zlib._Decompress | None = None
        if encoding in ("gzip", "deflate"):
            self._inflate = zlib.decompressobj(47 if encoding == "gzip" else zlib.MAX_WBITS)
        elif encoding not in ("", "identity"):
            raise ProtocolError(f"unsupported Content-Encoding {encoding!r}")

    @property
    def until_close(self) -> bool:
        """The body runs until the server closes the connection."""
        return not self._chunked and self._left is None

    def feed(self, data: bytes) -> None:
        """Take the bytes just read (b"" at the end of a read-until-close body)."""
        if self.complete:
            self.extra = self.extra or bool(data)
            return
        if self._chunked:
            data = self._dechunk(data)
        elif self._left is None:
            self.complete = not data
        elif len(data) >= self._left:
            self.extra = len(data) > self._left
            data = data[: self._left]
            self._left = 0
            self.complete = True
        else:
            self._left -= len(data)
        if self._inflate is not None:
            data = self._decompress(data)
        if data and not self.done:
            self._split(data)
        if self.complete and self._text and not self.done:
            # The last event may lack its blank line (aiohttp's reader passed it on too).
            self._split(b"\n\n")

    def _decompress(self, data: bytes) -> bytes:
        assert self._inflate is not None
        try:
            data = self._inflate.decompress(data)
            if self.complete:
                data += self._inflate.flush()
        except zlib.error as ex:
            raise ProtocolError(f"cannot decode the stream's body: {ex}") from None
        if self.complete and not self._inflate.eof:
            raise ProtocolError("the stream's compressed body is cut short")
        return data

    def _dechunk(self, data: bytes) -> bytes:
        """The body bytes in `data` (after what earlier reads left), without the framing."""
        if self._raw:
            data = self._raw + data
        out: list[bytes] = []
        at, size, need, crlf = 0, len(data), self._need, self._crlf
        while at < size:
            if need:  # chunk data
                stop = min(at + need, size)
                out.append(data[at:stop])
                need -= stop - at
                at = stop
            elif crlf:  # the CRLF after a chunk's data
                if size - at < 2:
                    break
                if data[at : at + 2] != b"\r\n":
                    raise ProtocolError("chunk data longer than its declared size")
                at += 2
                crlf = False
            elif (end := data.find(b"\r\n", at)) < 0:
                if size - at > MAX_HEAD:
                    raise ProtocolError(f"chunk header longer than {MAX_HEAD} bytes")
                break
            elif chunk := _chunk_size(data[at:end]):
                start = end + 2
                stop = start + chunk
                if data[stop : stop + 2] == b"\r\n":  # the whole chunk is here (usual)
                    out.append(data[start:stop])
                    at = stop + 2
                else:
                    need, crlf, at = chunk, True, start
            else:  # the last chunk; trailers (usually none) end with an empty line
                if data[end + 2 : end + 4] == b"\r\n":
                    at = end + 4
                elif (trailers := data.find(b"\r\n\r\n", end)) >= 0:
                    at = trailers + 4
                else:
                    break
                self.complete = True
                self.extra = at < size
                at = size
        self._need, self._crlf = need, crlf
        self._raw = data[at:]
        return out[0] if len(out) == 1 else b"".join(out)

    def _split(self, data: bytes) -> None:
        text = self._text
        if text:  # an event's start waits: scan only the new bytes (a big event stays linear)
            start = len(text) - 1  # a blank line or \r\n may straddle the old last byte
            text += data
            if b"\r" in data or text[start] == 13:
                text[start:] = _unify_line_ends(bytes(text[start:]))
            end = text.rfind(b"\n\n", start)
            if end < 0:
                return
            data = bytes(text)
            text.clear()
        else:
            if b"\r" in data:
                data = _unify_line_ends(data)
            end = data.rfind(b"\n\n")
            if end < 0:
                text += data
                return
        text += data[end + 2 :]
        events = self.events
        for block in data[:end].split(b"\n\n"):
            if block[:5] == b"data:" and b"\n" not in block:
                event = block[5:].lstrip(b" ")  # the usual event: one data line
            else:
                lines = [
                    line[5:].lstrip(b" ") for line in block.split(b"\n") if line[:5] == b"data:"
                ]
                if not lines:
                    continue  # comments, other fields or extra blank lines
                event = b"\n".join(lines)
            if len(event) < 16 and event.strip() == b"[DONE]":
                self.done = True
                text.clear()
                return
            events.append(event)


def _chunk_size(line: bytes) -> int:
    try:
        size = int(line, 16)
    except ValueError:  # chunk extensions (";name=value"), or not a size at all
        line = line.split(b";", 1)[0]
        try:
            size = int(line, 16)
        except ValueError:
            size = -1
    if size < 0 or b"_" in line:
        raise ProtocolError(f"bad chunk size {line[:20]!r}")
    return size


def _unify_line_ends(text: bytes) -> bytes:
    """\\r\\n and a lone \\r become \\n; a \\r at the end waits (a \\n may follow)."""
    if text.endswith(b"\r"):
        return text[:-1].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + b"\r"
    return text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
