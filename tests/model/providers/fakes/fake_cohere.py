"""A fake Cohere Chat API v2 server on 127.0.0.1 (aiohttp), for offline tests.

It records every request (path, headers, JSON body) and answers from a queue of
`Reply`s; with the queue empty it answers "ok". A streamed request
(`"stream": true`) is answered as v2 server-sent events built from the reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Reply:
    """One scripted answer: a JSON body (or raw SSE events) with a status and headers."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] | None = None
    """For streamed requests: the v2 events to send (default: derived from `body`)."""


def chat_reply(
    text: str = "ok",
    finish_reason: str = "COMPLETE",
    tool_calls: list[dict[str, Any]] | None = None,
    tool_plan: str | None = None,
    input_tokens: int = 7,
    output_tokens: int = 2,
    logprobs: list[dict[str, Any]] | None = None,
) -> Reply:
    """A v2 chat answer as Cohere shapes it."""
    message: dict[str, Any] = {"role": "assistant"}
    if text:
        message["content"] = [{"type": "text", "text": text}]
    if tool_calls:
        message["tool_calls"] = tool_calls
    if tool_plan:
        message["tool_plan"] = tool_plan
    body: dict[str, Any] = {
        "id": "c0ffee",
        "finish_reason": finish_reason,
        "message": message,
        "usage": {
            "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "tokens": {"input_tokens": input_tokens + 100, "output_tokens": output_tokens},
        },
    }
    if logprobs is not None:
        body["logprobs"] = logprobs
    return Reply(body)


def stream_events(text_chunks: list[str], finish_reason: str = "COMPLETE") -> list[dict[str, Any]]:
    """The v2 event sequence for a streamed text answer."""
    events: list[dict[str, Any]] = [
        {"type": "message-start", "id": "s1", "delta": {"message": {"role": "assistant"}}},
        {
            "type": "content-start",
            "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}},
        },
    ]
    events += [
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": c}}}}
        for c in text_chunks
    ]
    events += [
        {"type": "content-end", "index": 0},
        {
            "type": "message-end",
            "delta": {
                "finish_reason": finish_reason,
                "usage": {"tokens": {"input_tokens": 3, "output_tokens": len(text_chunks)}},
            },
        },
    ]
    return events


class FakeCohere:
    """Start with `await server.start()` (returns the base URL), stop with `await server.stop()`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[Reply] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v2/chat", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append({"path": request.path, "headers": dict(request.headers), "json": body})
        reply = self.replies.pop(0) if self.replies else chat_reply()
        if reply.status >= 300 or not body.get("stream"):
            return web.Response(
                status=reply.status,
                body=orjson.dumps(reply.body),
                headers={"Content-Type": "application/json", **reply.headers},
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in reply.events or stream_events(["ok"]):
            frame = f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"
            await response.write(frame)
        await response.write_eof()
        return response
