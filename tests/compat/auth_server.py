"""A fake OpenAI-compatible server on 127.0.0.1 that demands one bearer key.

    async with AuthServer("sk-right") as server:
        ...                                    # server.url ends with /v1
        server.seen                            # every request: path, headers, raw body
        server.rejected                        # how many got 401 for a wrong key

POST /v1/completions, /v1/chat/completions and /api (a custom JSON API, for
lm-eval's TemplateAPI example) answer only `Authorization: Bearer <key>`;
anything else gets OpenAI's 401 error body. Completions with `echo` answer one
logprob of -0.5 per prompt token (the first None), every token greedy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@dataclass
class AuthServer:
    key: str | None
    reply: str = "4"
    seen: list[Seen] = field(default_factory=list)
    rejected: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> AuthServer:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/api", self._custom)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def bodies(self) -> list[Any]:
        return [s.body for s in self.seen]

    async def _admit(self, request: web.Request) -> web.Response | None:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.seen.append(Seen(request.path, headers, raw))
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            self.rejected += 1
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=401)
        return None

    async def _completions(self, request: web.Request) -> web.Response:
        if (denied := await self._admit(request)) is not None:
            return denied
        body = self.seen[-1].body
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if prompts and isinstance(prompts[0], int):
            prompts = [prompts]  # one prompt of token ids
        if body.get("echo"):
            choices = [_echo(i, p) for i, p in enumerate(prompts)]
        else:
            choices = [
                {"index": i, "text": self.reply, "finish_reason": "stop", "logprobs": None}
                for i in range(len(prompts))
            ]
        return web.json_response(_envelope("text_completion", body, choices))

    async def _chat(self, request: web.Request) -> web.Response:
        if (denied := await self._admit(request)) is not None:
            return denied
        body = self.seen[-1].body
        message = {"role": "assistant", "content": self.reply}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response(_envelope("chat.completion", body, [choice]))

    async def _custom(self, request: web.Request) -> web.Response:
        # The shape lm-eval's documented example parses: choices[0].text and a
        # top-level logprobs.token_logprobs (one per token of the echoed prompt).
        if (denied := await self._admit(request)) is not None:
            return denied
        body = self.seen[-1].body
        prompt = body["prompt"]
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], list | str):
            prompt = prompt[0]  # a batch of one scoring input
        size = len(prompt)
        return web.json_response(
            {
                "choices": [{"text": self.reply}],
                "logprobs": {"token_logprobs": [-0.25] * size},
            }
        )


def _echo(index: int, prompt: Any) -> dict[str, Any]:
    size = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
    return {
        "index": index,
        "text": "",
        "finish_reason": "length",
        "logprobs": {
            "token_logprobs": [None] + [-0.5] * (size - 1),
            "top_logprobs": [None] + [{"t": -0.5}] * (size - 1),
        },
    }


def _envelope(kind: str, body: dict[str, Any], choices: list[Any]) -> dict[str, Any]:
    return {
        "id": "x-1",
        "object": kind,
        "created": 0,
        "model": body.get("model", ""),
        "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
