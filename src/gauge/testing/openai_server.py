"""A mock OpenAI-compatible server (aiohttp.web) for tests and benchmarks.

    async with OpenAIServer(validate=True) as server:
        model = get_model("openai-api/mock/m", base_url=server.url)
        ...
        assert server.requests[-1].body["messages"][0]["content"] == "Hi"

    python -m gauge.testing.openai_server --port 8000 --latency 0.05 \
        --rate-limit 100 --error-rate 0.01 --hang-rate 0.001 --retry-after 1

Endpoints: POST /v1/chat/completions and /v1/completions (JSON or SSE when
`stream` is true, ending with `data: [DONE]`), GET /v1/models and
/v1/models/{id}; GET /stats answers {"requests", "rejected"} (for
benchmarks). Replies echo the last user message (or `reply=`), honouring
`n`, `max_tokens` (finish_reason "length"), `stop`, `logprobs`/`top_logprobs`,
tools with a required or named `tool_choice` (a tool call is returned), and
`reasoning_effort` (a `reasoning_content` field, as vLLM and DeepSeek send it).

Rate limits: `rate_limit` requests per sliding second; `tokens_per_minute`
over a sliding `token_window` (60 s; a shorter window enforces the same rate
in proportion, as providers do), charging each request's usage total_tokens
(one word = one token). With `rate_headers`, every answer carries
OpenAI's x-ratelimit-limit-requests (per minute) / -tokens, and the remaining
count and reset time of the current window.

Faults, drawn per request from a seeded RNG, in this order: requests/s and
tokens/min limits (429 with Retry-After, retry-after-ms and x-ratelimit-reset-*),
`error_rate` (500), `hang_rate` (no answer until the client gives up or the
server stops), `malformed_rate` (a 200 with truncated JSON). Tests can also
queue exact responses with `script()`.

With `validate=True`, every request body is checked against the request
schemas of OpenAI's published OpenAPI document; a body that fails gets a 400
naming the problem and is kept in `validation_errors`. The schemas are in
`openai-openapi-subset.json` next to this module: a copy of the subset in the
project's shared specs folder (github.com/openai/openai-openapi, spec 2.3.0,
unchanged); see openai_schema.py. The answers are built in openai_replies.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gauge.testing.openai_replies import (
    chat_chunks,
    chat_reply,
    completion_chunks,
    completion_reply,
    model_object,
)
from gauge.testing.openai_schema import validate_request


@dataclass(slots=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any


@dataclass(slots=True)
class ScriptedResponse:
    """A response to send instead of the normal one (queued with `script()`)."""

    status: int = 200
    json: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[str, dict[str, Any]], dict[str, Any] | None]
"""(path, request body) -> response body, or None for the default reply."""


class OpenAIServer:
    """The mock server; start with `async with` (or `start()` / `stop()`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit: float | None = None,
        tokens_per_minute: float | None = None,
        token_window: float = 60.0,
        rate_headers: bool = False,
        error_rate: float = 0.0,
        hang_rate: float = 0.0,
        malformed_rate: float = 0.0,
        retry_after: float = 1.0,
        validate: bool = False,
        record: bool = True,
        reply: str | None = None,
        seed: int = 0,
    ) -> None:
        for name, rate in (
            ("error_rate", error_rate),
            ("hang_rate", hang_rate),
            ("malformed_rate", malformed_rate),
        ):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be within 0..1, got {rate}")
        self.host = host
        self.port = port
        self.latency = latency
        self.rate_limit = rate_limit
        self.tokens_per_minute = tokens_per_minute
        self.token_window = token_window
        self.rate_headers = rate_headers
        self.rejected = 0
        """Requests answered 429 by the rate limits."""
        self.error_rate = error_rate
        self.hang_rate = hang_rate
        self.malformed_rate = malformed_rate
        self.retry_after = retry_after
        self.validate = validate
        self.record = record
        self.reply = reply
        self.responder: Responder | None = None
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self.count = 0
        """Requests received (all endpoints, failed ones included)."""
        self._rng = random.Random(seed)
        self._script: deque[ScriptedResponse] = deque()
        self._request_times: deque[float] = deque()
        self._token_times: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        """The base URL clients use (ends with /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def script(
        self,
        status: int = 200,
        json: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue one response; queued responses are sent first, in order."""
        self._script.append(ScriptedResponse(status, json, raw, dict(headers or {})))

    def app(self) -> web.Application:
        """The aiohttp application (for embedding in another runner)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)
        app.router.add_get("/stats", self._stats)
        # Azure OpenAI and Azure AI shapes, for the providers' URL tests.
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        return app

    async def start(self, sock: socket.socket | None = None) -> OpenAIServer:
        """Start serving (on a free port when `port` is 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            sock.setblocking(False)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """Stop serving; hanging requests are released first."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OpenAIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers ------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "/v1/chat/completions", chat_reply, chat_chunks)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "/v1/completions", completion_reply, completion_chunks)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.count += 1
        self._remember(request, None)
        data = [model_object(m) for m in ("mock-model", "mock-model-2")]
        return _json({"object": "list", "data": data})

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        # Not counted as a request: benchmarks read it between runs.
        return _json({"requests": self.count, "rejected": self.rejected})

    async def _model(self, request: web.Request) -> web.StreamResponse:
        self.count += 1
        self._remember(request, None)
        return _json(model_object(request.match_info["model"]))

    async def _handle(
        self,
        request: web.Request,
        kind: str,
        reply: Callable[..., dict[str, Any]],
        chunks: Callable[..., list[dict[str, Any]]],
    ) -> web.StreamResponse:
        self.count += 1
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._remember(request, raw)
            return _error(400, "We could not parse the JSON body of your request.")
        if self.record:
            self._remember(request, body)
        if self._script:
            scripted = self._script.popleft()
            if scripted.raw is not None:
                return web.Response(
                    status=scripted.status, body=scripted.raw, headers=scripted.headers
                )
            return _json(scripted.json, scripted.status, scripted.headers)
        if self.validate and (problem := validate_request(kind, body)) is not None:
            self.validation_errors.append(f"{kind}: {problem}")
            return _error(400, f"Invalid request body: {problem}")
        if not isinstance(body, dict) or not body.get("model"):
            return _error(400, "you must provide a model parameter")
        data = None
        if self.tokens_per_minute is not None:
            # The token limit charges what the answer will report as used.
            data = self._reply(kind, body, reply)
        limited, rate_headers = self._limited(data)
        if limited is not None:
            return limited
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if self.error_rate and self._rng.random() < self.error_rate:
            return _error(
                500, "The server had an error while processing your request.", "server_error"
            )
        if self.hang_rate and self._rng.random() < self.hang_rate:
            await self._stopping.wait()
            return _error(503, "server stopping")
        if self.malformed_rate and self._rng.random() < self.malformed_rate:
            return web.Response(
                body=b'{"id": "chatcmpl-trunc", "choices": [', content_type="application/json"
            )
        if data is None:
            data = self._reply(kind, body, reply)
        if body.get("stream"):
            return await _sse(request, chunks(data, body), rate_headers)
        return _json(data, headers=rate_headers)

    def _reply(
        self, kind: str, body: dict[str, Any], reply: Callable[..., dict[str, Any]]
    ) -> dict[str, Any]:
        data = self.responder(kind, body) if self.responder else None
        return reply(body, self.reply) if data is None else data

    def _limited(
        self, data: dict[str, Any] | None
    ) -> tuple[web.Response | None, dict[str, str] | None]:
        """(a 429 when over a limit, else None; the rate headers for the answer)."""
        if self.rate_limit is None and self.tokens_per_minute is None:
            return None, None
        now = time.monotonic()
        times = self._request_times
        while times and now - times[0] >= 1.0:
            times.popleft()
        window = self._token_times
        while window and now - window[0][0] >= self.token_window:
            self._window_tokens -= window.popleft()[1]
        if self.rate_limit is not None and len(times) >= self.rate_limit:
            return self._too_many("requests", "requests per second", now), None
        tokens = 0
        if self.tokens_per_minute is not None:
            usage = (data or {}).get("usage") or {}
            tokens = int(usage.get("total_tokens") or 0)
            if self._window_tokens + tokens > self._token_budget():
                return self._too_many("tokens", "tokens per minute", now), None
            window.append((now, tokens))
            self._window_tokens += tokens
        if self.rate_limit is not None:
            times.append(now)
        return None, self._rate_headers(now)

    def _token_budget(self) -> float:
        return (self.tokens_per_minute or 0.0) * self.token_window / 60.0

    def _rate_headers(self, now: float) -> dict[str, str] | None:
        if not self.rate_headers:
            return None
        headers: dict[str, str] = {}
        if self.rate_limit is not None:
            times = self._request_times
            headers["x-ratelimit-limit-requests"] = f"{self.rate_limit * 60:g}"
            headers["x-ratelimit-remaining-requests"] = f"{max(0, self.rate_limit - len(times)):g}"
            reset = 1.0 - (now - times[0]) if times else 0.0
            headers["x-ratelimit-reset-requests"] = f"{max(0.0, reset):.3f}s"
        if self.tokens_per_minute is not None:
            window = self._token_times
            left = max(0, int(self._token_budget() - self._window_tokens))
            headers["x-ratelimit-limit-tokens"] = f"{self.tokens_per_minute:g}"
            headers["x-ratelimit-remaining-tokens"] = str(left)
            reset = self.token_window - (now - window[0][0]) if window else 0.0
            headers["x-ratelimit-reset-tokens"] = f"{max(0.0, reset):.3f}s"
        return headers

    def _too_many(self, kind: str, unit: str, now: float) -> web.Response:
        self.rejected += 1
        wait = self.retry_after
        headers = {
            "Retry-After": f"{wait:g}",
            "retry-after-ms": str(int(wait * 1000)),
            f"x-ratelimit-reset-{kind}": f"{wait:g}s",
        }
        if (extra := self._rate_headers(now)) is not None:
            headers = {**extra, **headers}
        message = f"Rate limit reached on {unit}. Please try again in {wait:g}s."
        return _error(429, message, kind, headers, code="rate_limit_exceeded")

    def _remember(self, request: web.Request, body: Any) -> None:
        if not self.record:
            return
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )


# -- HTTP helpers ------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def _error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> web.Response:
    error = {"message": message, "type": type_, "param": None, "code": code}
    return _json({"error": error}, status, headers)


async def _sse(
    request: web.Request, chunks: list[dict[str, Any]], extra: dict[str, str] | None = None
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **(extra or {})}
    )
    await response.prepare(request)
    for chunk in chunks:
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


# -- process mode ------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gauge.testing.openai_server",
        description="Mock OpenAI-compatible server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s before 429")
    parser.add_argument("--tpm", type=float, default=None, help="tokens/min before 429")
    parser.add_argument(
        "--token-window", type=float, default=60.0, help="seconds the tpm limit is enforced over"
    )
    parser.add_argument(
        "--rate-headers", action="store_true", help="send x-ratelimit-* headers on every answer"
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="fraction never answered")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="fraction with bad JSON")
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds sent with 429")
    parser.add_argument("--reply", default=None, help="fixed reply text (default: echo)")
    parser.add_argument("--validate", action="store_true", help="validate bodies against the spec")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; prints `listening on <url>` once ready."""
    args = _parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    children = []
    for worker in range(1, max(1, args.workers)):
        pid = os.fork()
        if pid == 0:
            _serve(args, sock, worker, announce=None)
            os._exit(0)
        children.append(pid)
    try:
        _serve(args, sock, 0, announce=f"listening on http://{args.host}:{port}/v1")
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _serve(
    args: argparse.Namespace, sock: socket.socket, worker: int, announce: str | None
) -> None:
    async def run() -> None:
        server = OpenAIServer(
            host=args.host,
            port=sock.getsockname()[1],
            latency=args.latency,
            rate_limit=args.rate_limit,
            tokens_per_minute=args.tpm,
            token_window=args.token_window,
            rate_headers=args.rate_headers,
            error_rate=args.error_rate,
            hang_rate=args.hang_rate,
            malformed_rate=args.malformed_rate,
            retry_after=args.retry_after,
            validate=args.validate,
            record=False,
            reply=args.reply,
            seed=args.seed + worker,
        )
        await server.start(sock)
        if announce:
            print(announce, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
