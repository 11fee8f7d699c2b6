"""The generation routes' shortcut past Starlette's routing and middleware."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gauge.serve.fastpath import FastStarlette


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read()


@pytest.fixture
def run() -> Iterator[Any]:
    """`run(app)` serves an ASGI app with uvicorn on 127.0.0.1; returns its root URL."""
    import uvicorn

    servers: list[tuple[Any, threading.Thread, socket.socket]] = []

    def start(app: Any) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread, sock))
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


async def fast(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(b"fast:" + body)


async def routed(request: Request) -> Response:
    return PlainTextResponse(f"routed:{request.method}")


def make_app() -> FastStarlette:
    return FastStarlette({"/gen": fast}, routes=[Route("/gen", routed, methods=["GET", "POST"])])


class Recording:
    """User middleware that records the paths it saw."""

    seen: list[str] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Recording.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def test_a_fast_post_skips_the_router_and_other_requests_do_not(run: Any) -> None:
    root = run(make_app())
    # The router would answer "routed:POST": the shortcut answered before it.
    assert http("POST", f"{root}/gen", b"hello") == (200, b"fast:hello")
    assert http("GET", f"{root}/gen") == (200, b"routed:GET")
    status, _ = http("POST", f"{root}/elsewhere", b"x")
    assert status == 404


def test_user_middleware_turns_the_shortcut_off(run: Any) -> None:
    app = make_app()
    app.add_middleware(Recording)
    Recording.seen = []
    root = run(app)
    assert http("POST", f"{root}/gen", b"hello") == (200, b"routed:POST")
    assert Recording.seen == ["POST /gen"]


def test_gauge_generation_routes_answer_through_the_shortcut(serve: Any) -> None:
    server = serve()
    assert isinstance(server.app, FastStarlette)
    assert set(server.app.fast_routes) == {"/v1/chat/completions", "/v1/completions"}
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "a b c"}]}
    status, data = http("POST", f"{server.url}/chat/completions", orjson.dumps(body))
    assert status == 200
    assert orjson.loads(data)["choices"][0]["message"]["content"] == "a b c"
    status, data = http("POST", f"{server.url}/completions", b"{not json")
    assert status == 400 and "not valid JSON" in orjson.loads(data)["error"]["message"]
    # Other methods on the same path still go through routing: 405 in OpenAI's shape.
    status, data = http("GET", f"{server.url}/chat/completions")
    assert status == 405 and "POST" in orjson.loads(data)["error"]["message"]
