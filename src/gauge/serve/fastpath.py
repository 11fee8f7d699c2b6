"""Starlette, with the generation routes answered before routing and middleware.

POST /v1/chat/completions and /v1/completions are nearly all of a server's
traffic. Starlette sends each request through ServerErrorMiddleware,
ExceptionMiddleware, the router's match loop and two wrapper closures before the
endpoint runs: about 9 us of the ~37 us the app spends on a mock-engine request
(bench/results/perf.md). The endpoints here already turn every failure into an
OpenAI error response, so those layers add nothing for them.

Every other request (other paths, other methods, lifespan) takes Starlette's
normal path. If user middleware is added, the shortcut is off, so no middleware
is ever skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class FastStarlette(Starlette):
    """A Starlette app whose `fast` POST endpoints skip routing and middleware."""

    def __init__(self, fast: Mapping[str, Endpoint], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes = dict(fast)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.user_middleware or getattr(self, "max_body_size", None) is not None:
            return stack
        return _shortcut(self.fast_routes, stack)


def _shortcut(routes: dict[str, Endpoint], stack: ASGIApp) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = routes.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await stack(scope, receive, send)

    return app
