"""Server-sent event streams over the lean HTTP/1.1 client: against the mock OpenAI
server, and a raw socket server for odd framings (split chunks, bare \\n line ends,
multi-line data, comments, Content-Length and read-until-close bodies, cuts)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import time
from typing import Any

import orjson
import pytest
from test_http1 import RawServer

from gauge import get_model
from gauge.model.output import StreamInfo
from gauge.model.providers import _http1, _http1_body
from gauge.model.providers._http import HttpClient, HTTPConnectionError, HTTPStatusError
from gauge.model.providers._http1 import Http1Pool
from gauge.testing import OpenAIServer

SSE_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
CHUNKED = (SSE_HEAD + "Transfer-Encoding: chunked\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def chunked(*parts: bytes) -> bytes:
    """A whole chunked reply: one chunk per part, then the last chunk."""
    return CHUNKED + b"".join(chunk(p) for p in parts) + b"0\r\n\r\n"


def sized(body: bytes, extra: str = "") -> bytes:
    return f"{SSE_HEAD}{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def read(client: HttpClient, path: str = "chat/completions") -> tuple[Any, list[bytes]]:
    """The StreamInfo's headers and every event's data."""
    items = [item async for item in client.stream_sse(path, {"stream": True})]
    info = items[0]
    events = [e for e in items[1:] if isinstance(e, bytes)]
    assert isinstance(info, StreamInfo) and len(events) == len(items) - 1
    return info.headers, events


def text_of(events: list[bytes]) -> str:
    chunks = [orjson.loads(e) for e in events]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_chat_streams_from_the_mock_server_reuse_one_connection() -> None:
    async with OpenAIServer(validate=True) as server:
        client = HttpClient(server.url, {"Authorization": "Bearer sk-1"})
        assert client._pool is not None
        for i in range(3):
            body = {
                "model": "m",
                "messages": [{"role": "user", "content": f"Count to {i}"}],
                "stream": True,
            }
            items = [item async for item in client.stream_sse("chat/completions", body)]
            info = items[0]
            events = [e for e in items[1:] if isinstance(e, bytes)]
            assert isinstance(info, StreamInfo) and info.headers is not None
            assert info.headers["CONTENT-TYPE"].startswith("text/event-stream")
            assert info.headers["cache-control"] == "no-cache"  # case-insensitive
            assert text_of(events) == f"Count to {i}"
            assert b"[DONE]" not in events
        await asyncio.sleep(0.05)  # a body's last chunk may come after [DONE]
        [loop_idle] = client._pool._idle.values()
        assert len(loop_idle) == 1  # one connection, read to its end and reused
        await client.close()
    assert server.requests[-1].headers.get("accept") == "text/event-stream"


async def test_model_stream_goes_through_the_lean_client() -> None:
    async with OpenAIServer(validate=True) as server:
        model = get_model("openai-api/mock/m", base_url=server.url, api_key="x", memoize=False)

        async def one(i: int) -> str:
            return "".join([d async for d in model.stream(f"Hi {i}")])

        texts = await asyncio.gather(*(one(i) for i in range(20)))
        await model.close()
    assert texts == [f"Hi {i}" for i in range(20)]


async def test_events_split_across_chunks_and_reads_bare_newlines_comments_multiline() -> None:
    body = (
        b": a comment\n"
        b'event: delta\nid: 7\ndata: {"a": 1}\n\n'
        b"data:no-space\r\n\r\n"
        b"data: line one\ndata: line two\r\ndata:\n\n"
        b"retry: 100\n\n"  # no data: not an event
        b"\n\n"
        b'data: {"b": 2}\r\r'  # lone CRs end lines too
        b"data: [DONE]\n\n"
        b"data: after done\n\n"
    )
    pieces = [body[i : i + 5] for i in range(0, len(body), 5)]  # lines split by chunks
    reply = chunked(*pieces)
    async with RawServer() as server:
        # Reads that cut the chunk framing itself (size lines, data, CRLFs) anywhere.
        server.answer(*(reply[i : i + 3] for i in range(0, len(reply), 3)))
        server.answer(reply)
        client = HttpClient(server.url)
        _, split = await read(client)
        _, whole = await read(client)
        await client.close()
    expected = [b'{"a": 1}', b"no-space", b"line one\nline two\n", b'{"b": 2}']
    assert split == expected and whole == expected
    assert server.connections == 1
    assert "Accept: text/event-stream\r\n" in server.seen[0].head


async def test_content_length_trailers_extensions_and_an_unterminated_last_event() -> None:
    events = b"data: 1\n\ndata: 2\n\n"
    with_trailers = CHUNKED + b"7;ext=yes\r\ndata: 1\r\n4\r\n\n\nda\r\n0\r\nX-Trailer: t\r\n\r\n"
    async with RawServer() as server:
        server.answer(sized(events))
        server.answer(sized(events)[:-3], sized(events)[-3:], pause=0.02)
        server.answer(with_trailers)
        server.answer(sized(b"data: last, no blank line\n"))
        server.answer(sized(b""))
        client = HttpClient(server.url)
        results = [(await read(client))[1] for _ in range(5)]
        await client.close()
    assert results == [[b"1", b"2"], [b"1", b"2"], [b"1"], [b"last, no blank line"], []]
    assert server.connections == 1


async def test_a_body_read_until_close() -> None:
    async with RawServer() as server:
        server.answer(
            SSE_HEAD.encode() + b"\r\ndata: a\n\n",
            b"data: b\n\n",
            b"data: c",  # the close ends the last event
            close=True,
            pause=0.02,
        )
        server.answer(sized(b"data: next\n\n"))
        client = HttpClient(server.url)
        _, first = await read(client)
        _, second = await read(client)
        await client.close()
    assert first == [b"a", b"b", b"c"] and second == [b"next"]
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        CHUNKED + chunk(b"data: a\n\n") + chunk(b"data: b"),  # chunked, cut mid-event
        sized(b"data: a\n\ndata: [DONE]\n\n")[:-10],  # Content-Length not reached
    ],
)
async def test_a_server_closing_mid_stream_is_a_connection_error(reply: bytes) -> None:
    async with RawServer() as server:
        server.answer(reply, close=True)
        server.answer(sized(b"data: ok\n\n"))
        client = HttpClient(server.url)
        got: list[Any] = []
        with pytest.raises(HTTPConnectionError, match="payload is not completed") as caught:
            async for item in client.stream_sse("x", {}):
                got.append(item)
        assert "mid-stream" in str(caught.value)
        assert got[1:] == [b"a"]  # what came before the cut was passed on
        assert (await read(client))[1] == [b"ok"]
        await client.close()
    assert server.connections == 2


async def test_mock_server_truncated_streams_fail_with_the_known_cause() -> None:
    async with OpenAIServer(truncate_rate=1.0) as server:
        client = HttpClient(server.url)
        body = {"model": "m", "messages": [{"role": "user", "content": "a b c d e"}]}
        with pytest.raises(HTTPConnectionError, match="payload is not completed"):
            async for _ in client.stream_sse("chat/completions", {**body, "stream": True}):
                pass
        await client.close()


async def test_a_429_on_a_stream_raises_with_retry_after_and_keeps_the_connection() -> None:
    body = b'{"error": {"message": "slow down", "type": "rate_limit"}}'
    reply = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        b"Retry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk(body[:10])
        + chunk(body[10:])
        + b"0\r\n\r\n"
    )
    async with RawServer() as server:
        server.answer(reply)
        server.answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\nnot json!")
        server.answer(sized(b"data: fine\n\n"))
        client = HttpClient(server.url)
        with pytest.raises(HTTPStatusError) as caught:
            await read(client)
        assert caught.value.status == 429 and caught.value.message == "slow down"
        assert caught.value.retry_after == 3.0
        with pytest.raises(HTTPStatusError, match="HTTP 500: not json!"):
            await read(client)
        assert (await read(client))[1] == [b"fine"]
        await client.close()
    assert server.connections == 1


async def test_a_consumer_that_stops_early_drops_the_connection() -> None:
    many = b"".join(b"data: %d\n\n" % i for i in range(5))
    async with RawServer() as server:
        server.answer(chunked(many), sized(b"data: late\n\n"), pause=0.05)
        server.answer(sized(b"data: second\n\n"))
        client = HttpClient(server.url)
        events = client.stream_sse("x", {})
        async with contextlib.aclosing(events):
            async for item in events:
                if item == b"1":
                    break
        # A half-read reply's bytes must not be taken for the next one's.
        assert (await read(client))[1] == [b"second"]
        await client.close()
    assert server.connections == 2


async def test_a_consumer_cancelled_while_waiting_drops_the_connection() -> None:
    async with RawServer() as server:
        server.answer(CHUNKED + chunk(b"data: a\n\n"), chunk(b"data: b\n\n"), pause=1.0)
        server.answer(sized(b"data: next\n\n"))
        client = HttpClient(server.url)
        got: list[Any] = []

        async def consume() -> None:
            async for item in client.stream_sse("x", {}):
                got.append(item)

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await consume()
        assert got[1:] == [b"a"]
        assert (await read(client))[1] == [b"next"]
        await client.close()
    assert server.connections == 2


async def test_done_before_the_body_ends_reuses_the_connection_once_it_ends() -> None:
    async with RawServer() as server:
        server.answer(CHUNKED + chunk(b"data: a\n\ndata: [DONE]\n\n"), b"0\r\n\r\n", pause=0.05)
        server.answer(sized(b"data: b\n\n"))
        client = HttpClient(server.url)
        assert (await read(client))[1] == [b"a"]  # ends at [DONE], before the last chunk
        assert client._pool is not None
        for _ in range(100):  # the last chunk comes 50 ms later: then it is idle
            await asyncio.sleep(0.01)
            if any(client._pool._idle.values()):
                break
        assert (await read(client))[1] == [b"b"]
        await client.close()
    assert server.connections == 1


async def test_a_body_that_never_ends_after_done_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_http1, "DRAIN_SECONDS", 0.05)
    async with RawServer() as server:
        server.answer(CHUNKED + chunk(b"data: a\n\ndata: [DONE]\n\n"))  # no last chunk
        server.answer(sized(b"data: b\n\n"))
        server.answer(CHUNKED + chunk(b"data: c\n\ndata: [DONE]\n\n"))  # none here either
        client = HttpClient(server.url)
        assert (await read(client))[1] == [b"a"]
        await asyncio.sleep(0.15)
        assert (await read(client))[1] == [b"b"]
        assert (await read(client))[1] == [b"c"]
        await client.close()  # closes the one still waiting for its body's end
    assert server.connections == 2


async def test_gzip_stream_bodies_are_decoded_as_they_arrive() -> None:
    packed = gzip.compress(b"data: zipped\n\ndata: two\n\n")
    reply = (
        SSE_HEAD + "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"".join(chunk(packed[i : i + 4]) for i in range(0, len(packed), 4))
    async with RawServer() as server:
        server.answer(reply + b"0\r\n\r\n")
        server.answer(sized(b"data: x\n\n", "Content-Encoding: br\r\n"), close=True)
        client = HttpClient(server.url)
        assert (await read(client))[1] == [b"zipped", b"two"]
        with pytest.raises(HTTPConnectionError, match="unsupported Content-Encoding 'br'"):
            await read(client)
        await client.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (CHUNKED + b"zz\r\ndata: a\n\n\r\n", "bad chunk size b'zz'"),
        (CHUNKED + b"3\r\ndata: a\r\n", "chunk data longer than its declared size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", None),  # not SSE: no events
    ],
)
async def test_unreadable_stream_bodies(reply: bytes, message: str | None) -> None:
    async with RawServer() as server:
        server.answer(reply, close=True)
        client = HttpClient(server.url)
        if message is None:
            assert (await read(client))[1] == []
        else:
            with pytest.raises(HTTPConnectionError, match=message):
                await read(client)
        await client.close()


async def test_a_refused_connection_is_a_connection_error() -> None:
    async with RawServer() as server:
        url = server.url
    client = HttpClient(url)
    with pytest.raises(HTTPConnectionError, match="Cannot connect to host"):
        await read(client)
    await client.close()


async def test_reading_pauses_while_the_consumer_is_behind() -> None:
    event = b"data: " + b"x" * 1000 + b"\n\n"
    count = 2000  # ~2 MB, several times the unread limit
    async with RawServer() as server:
        server.answer(chunked(*[event] * count))
        pool = Http1Pool(server.url, {})
        stream = await pool.stream("x", b"{}")
        assert stream.status == 200
        connection = stream._connection
        assert connection is not None
        first = await stream.events()
        for _ in range(50):  # the server writes on; the client stops reading
            await asyncio.sleep(0.01)
            if connection._paused:
                break
        assert connection._paused
        assert len(connection._sse.events) * len(event) < 2 * _http1.MAX_UNREAD  # type: ignore[union-attr]
        got = len(first)
        while batch := await stream.events():
            got += len(batch)
        stream.close()
        assert got == count and not connection._paused
        pool.close()


def test_a_stream_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[bytes]:
        async with RawServer() as server:
            server.answer(chunked(b"data: on", b" uvloop\n\n"))
            client = HttpClient(server.url)
            _, events = await read(client)
            await client.close()
            return events

    assert uvloop.run(main()) == [b"on uvloop"]


async def test_url_credentials_stream_on_aiohttp_as_before() -> None:
    async with RawServer() as server:
        server.answer(chunked(b"data: one\r\n\r\ndata: two\n\n", b"data: [DONE]\n\n"))
        server.answer(chunked(b"data: a\n\n", b"data: b\n\n"))
        client = HttpClient(server.url.replace("://", "://user:pw@"))
        assert client._pool is None
        assert (await read(client))[1] == [b"one", b"two"]
        events = client.stream_sse("x", {})
        async with contextlib.aclosing(events):
            async for item in events:
                if item == b"a":
                    break
        await client.close()
    assert "Authorization: Basic " in server.seen[0].head


@pytest.mark.parametrize("seed", range(30))
def test_any_framing_and_line_ends_give_the_same_events(seed: int) -> None:
    rng = random.Random(seed)
    expected = [b'{"n": %d}' % i if i % 3 else b"first line\nsecond line %d" % i for i in range(20)]
    text = b""
    for event in expected:
        end = rng.choice([b"\n", b"\r\n", b"\r"])
        if rng.random() < 0.3:
            text += b": keep-alive" + end
        text += b"".join(b"data: " + line + end for line in event.split(b"\n")) + end
    text += b"data: [DONE]" + end + end
    body = b""
    at = 0
    while at < len(text):  # chunks of random sizes
        size = rng.randint(1, 40)
        body += chunk(text[at : at + size])
        at += size
    body += b"0\r\n\r\n"
    sse = _http1_body.SseBody(True, None, "")
    got: list[bytes] = []
    at = 0
    while at < len(body):  # reads of random sizes
        size = rng.randint(1, 60)
        sse.feed(body[at : at + size])
        got += sse.events
        sse.events = []
        at += size
    assert got == expected and sse.done and sse.complete and not sse.extra


def test_a_big_event_in_many_small_reads_stays_linear() -> None:
    event = b"data: " + b"x" * 2_000_000 + b"\n\n"
    sse = _http1_body.SseBody(False, len(event), "")
    started = time.perf_counter()
    for at in range(0, len(event), 1024):
        sse.feed(event[at : at + 1024])
    assert time.perf_counter() - started < 1.0  # quadratic rescanning takes many seconds
    assert sse.complete and [len(e) for e in sse.events] == [2_000_000]
