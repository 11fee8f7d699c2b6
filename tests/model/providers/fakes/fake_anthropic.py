"""A fake Anthropic Messages API on 127.0.0.1, plus the recording server it is built on.

`FakeServer` records every request (path, query, headers, JSON body) and answers
from a queue of scripted replies (`reply`, `reply_sse`), falling back to the
subclass's `default` answer. The google and mistral fakes reuse it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    """A scripted answer: JSON (or raw text) with a status, or a list of SSE events."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Any] | None = None
    """SSE events: dicts are sent as `data: <json>`, (name, dict) pairs with `event:`."""


class FakeServer:
    """An aiohttp server on a free 127.0.0.1 port; start it, use `url`, stop it."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reply(self, body: Any = None, status: int = 200, headers: dict[str, str] | None = None):
        """Queue a JSON (or text, when `body` is a str) answer."""
        self.replies.append(Reply(status, body, headers or {}))

    def reply_sse(self, events: list[Any]) -> None:
        """Queue a text/event-stream answer."""
        self.replies.append(Reply(events=events))

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def default(self, recorded: Recorded) -> Reply:
        """The answer when nothing is queued (subclasses give one; here it is a test bug)."""
        raise AssertionError(f"no reply queued for {recorded.method} {recorded.path}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = raw.decode() if raw else None
        if raw and request.content_type == "application/json":
            body = json.loads(raw)
        recorded = Recorded(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        self.requests.append(recorded)
        reply = self.replies.pop(0) if self.replies else self.default(recorded)
        if reply.events is not None:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for event in reply.events:
                await response.write(_sse(event))
            await response.write_eof()
            return response
        if isinstance(reply.body, str):
            return web.Response(status=reply.status, text=reply.body, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def _sse(event: Any) -> bytes:
    if isinstance(event, tuple):
        name, data = event
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
    if isinstance(event, str):
        return f"data: {event}\n\n".encode()
    return f"data: {json.dumps(event)}\n\n".encode()


def message(
    content: list[dict[str, Any]] | str = "Hello!",
    stop_reason: str = "end_turn",
    usage: dict[str, int] | None = None,
    model: str = "claude-test",
) -> dict[str, Any]:
    """A Messages API response body."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 3},
    }


def stream_events(texts: list[str], stop_reason: str = "end_turn") -> list[Any]:
    """The SSE events of a streamed text answer."""
    events: list[Any] = [
        ("message_start", {"type": "message_start", "message": {**message([]), "usage": {}}}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for text in texts:
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason},
                "usage": {"output_tokens": len(texts)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


class FakeAnthropic(FakeServer):
    """Answers POST /v1/messages with "Hello!" unless a reply is queued."""

    def default(self, recorded: Recorded) -> Reply:
        if recorded.path != "/v1/messages":
            return Reply(
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"no route {recorded.path}"},
                },
            )
        return Reply(body=message(model=recorded.body.get("model", "claude-test")))
