"""The lean HTTP/1.1 client for plain-http servers, against a raw socket server on
127.0.0.1 that answers each request with scripted bytes (split, chunked, gzip,
closed early, out of step)."""

from __future__ import annotations

import asyncio
import gzip
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.model.providers._http import HttpClient, HTTPConnectionError, HTTPStatusError


@dataclass
class Act:
    """What the server does for one request: write `parts` (a pause between them),
    then close the connection if `close`."""

    parts: list[bytes]
    close: bool = False
    pause: float = 0.0


@dataclass
class Seen:
    connection: int
    head: str
    body: bytes


@dataclass
class RawServer:
    acts: deque[Act] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    def answer(self, *parts: bytes, close: bool = False, pause: float = 0.0) -> None:
        self.acts.append(Act(list(parts), close, pause))

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length)
                self.seen.append(Seen(number, head, body))
                act = self.acts.popleft()
                for i, part in enumerate(act.parts):
                    if i and act.pause:
                        await asyncio.sleep(act.pause)
                    writer.write(part)
                    await writer.drain()
                if act.close:
                    return
        finally:
            writer.close()


def ok(body: bytes = b'{"ok": 1}', extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_keep_alive_reuses_one_connection_and_sends_a_complete_request() -> None:
    async with RawServer() as server:
        server.answer(ok(b'{"n": 1}'))
        server.answer(ok(b'{"n": 2}', "X-RateLimit-Remaining-Requests: 7\r\n"))
        client = HttpClient(server.url, {"Authorization": "Bearer sk-1"})
        first, _ = await client.post_json("chat/completions", {"a": "é"})
        second, headers = await client.post_json(
            "/chat/completions", {"b": 2}, headers={"X-Extra": "yes"}, params={"q": "a b"}
        )
        await client.close()
    assert (first, second) == ({"n": 1}, {"n": 2})
    assert headers["x-ratelimit-remaining-requests"] == "7"  # case-insensitive
    assert server.connections == 1
    head = server.seen[1].head
    assert head.startswith("POST /v1/chat/completions?q=a+b HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Authorization: Bearer sk-1\r\n" in head and "X-Extra: yes\r\n" in head
    assert "Content-Type: application/json\r\n" in head
    assert server.seen[0].body == '{"a":"é"}'.encode()


async def test_replies_split_byte_by_byte_chunked_gzip_and_interim() -> None:
    body = b'{"text": "' + b"x" * 3000 + b'"}'
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"a;ext=1\r\n"
        + body[:10]
        + b"\r\n"
        + f"{len(body) - 10:x}".encode()
        + b"\r\n"
        + body[10:]
        + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    packed = gzip.compress(body)
    zipped = (
        f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n\r\n"
    ).encode() + packed
    async with RawServer() as server:
        split = ok(body)
        server.answer(*(split[i : i + 1] for i in range(len(split))))
        server.answer(*(chunked[i : i + 7] for i in range(0, len(chunked), 7)))
        server.answer(zipped)
        server.answer(b"HTTP/1.1 100 Continue\r\n\r\n", ok(b'{"after": "interim"}'))
        client = HttpClient(server.url)
        replies = [(await client.post_json("x", {}))[0] for _ in range(4)]
        await client.close()
    expected = {"text": "x" * 3000}
    assert replies == [expected, expected, expected, {"after": "interim"}]
    assert server.connections == 1


async def test_a_body_read_until_close_and_http_1_0_do_not_reuse_the_connection() -> None:
    async with RawServer() as server:
        server.answer(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"until": "close"}', close=True)
        server.answer(ok(b'{"v": "1.0"}').replace(b"HTTP/1.1", b"HTTP/1.0"))
        server.answer(ok(b'{"third": 1}'))
        client = HttpClient(server.url)
        replies = [(await client.post_json("x", {}))[0] for _ in range(3)]
        await client.close()
    assert replies == [{"until": "close"}, {"v": "1.0"}, {"third": 1}]
    assert server.connections == 3


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with RawServer() as server:
        server.answer(ok(b'{"n": 1}'), close=True)  # keep-alive promised, then closed
        server.answer(ok(b'{"n": 2}'))
        client = HttpClient(server.url)
        assert (await client.post_json("x", {}))[0] == {"n": 1}
        await asyncio.sleep(0.05)  # the close reaches the client while it is idle
        assert (await client.post_json("x", {}))[0] == {"n": 2}
        await client.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (ok(b'{"cut": "sho')[:-3], "the server closed the connection mid-reply"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line: 'SSH-2.0-OpenSSH'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length 'ten'"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}", "'br'"),
    ],
)
async def test_unreadable_replies_are_connection_errors(reply: bytes, message: str) -> None:
    async with RawServer() as server:
        server.answer(reply, close=True)
        server.answer(ok())
        client = HttpClient(server.url)
        with pytest.raises(HTTPConnectionError, match=message.replace("(", r"\(")):
            await client.post_json("x", {})
        assert (await client.post_json("x", {}))[0] == {"ok": 1}  # a fresh connection
        await client.close()
    assert server.connections == 2


async def test_error_statuses_keep_the_body_and_retry_after() -> None:
    body = b'{"error": {"message": "slow down"}}'
    async with RawServer() as server:
        server.answer(ok(body, "Retry-After: 3\r\n").replace(b"200 OK", b"429 Too Many Requests"))
        client = HttpClient(server.url)
        with pytest.raises(HTTPStatusError) as caught:
            await client.post_json("x", {})
        await client.close()
    assert caught.value.status == 429 and caught.value.message == "slow down"
    assert caught.value.retry_after == 3.0


async def test_a_cancelled_request_drops_its_connection() -> None:
    async with RawServer() as server:
        server.answer(ok()[:20], ok()[20:], pause=1.0)  # slow: cancelled before it ends
        server.answer(ok(b'{"next": 1}'))
        client = HttpClient(server.url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.post_json("x", {})
        # The late bytes of the first reply must not be read as the second's.
        assert (await client.post_json("x", {}))[0] == {"next": 1}
        await client.close()
    assert server.connections == 2


async def test_connection_refused_is_a_connection_error() -> None:
    async with RawServer() as server:
        url = server.url
    client = HttpClient(url)
    with pytest.raises(HTTPConnectionError, match=r"Cannot connect to host http://127\.0\.0\.1"):
        await client.post_json("x", {})
    await client.close()


def test_a_key_with_a_line_break_is_refused_up_front() -> None:
    for url in ("http://127.0.0.1:1/v1", "https://api.example.com/v1"):
        with pytest.raises(ConfigError, match="the Authorization header contains a line break"):
            HttpClient(url, {"Authorization": "Bearer sk-abc\n"})


def test_https_and_url_credentials_stay_on_aiohttp() -> None:
    assert HttpClient("https://api.example.com/v1")._pool is None
    assert HttpClient("http://user:pw@127.0.0.1:1/v1")._pool is None
    assert HttpClient("http://127.0.0.1:1/v1")._pool is not None


def test_it_runs_on_uvloop_too() -> None:
    # uvloop's transports are not asyncio.Transport instances; apps embedding gauge
    # (a web server, a notebook kernel) often run on it.
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[Any, int]:
        async with RawServer() as server:
            server.answer(ok(b'{"on": "uvloop"}'))
            server.answer(ok(b'{"again": 1}'))
            client = HttpClient(server.url)
            first, _ = await client.post_json("x", {})
            second, _ = await client.post_json("x", {})
            await client.close()
            return [first, second], server.connections

    replies, connections = uvloop.run(main())
    assert replies == [{"on": "uvloop"}, {"again": 1}] and connections == 1


async def test_a_per_request_header_with_a_line_break_is_a_config_error() -> None:
    async with RawServer() as server:
        client = HttpClient(server.url)
        with pytest.raises(ConfigError, match="the X-Run header contains a line break"):
            await client.post_json("x", {}, headers={"X-Run": "1\r\nEvil: yes"})
        await client.close()
    assert server.seen == []  # nothing was sent
