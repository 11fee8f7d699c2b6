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

Faults, in this order: requests/s and tokens/min limits (429 with
Retry-After, retry-after-ms and x-ratelimit-reset-*), then the injected ones of
faults.py, each a seeded rate: 429 storms (`storm_rate`, `storm_seconds`, with
or without Retry-After), `error_rate` (500), `reset_rate` (connection reset, no
answer), `hang_rate` (no answer until the client gives up or the server
stops), `malformed_rate` (a 200 with truncated JSON), `truncate_rate` (a stream
cut before [DONE]) and `trickle_rate` (chunks `trickle_delay` apart). Injected
faults are counted in `faults.counts` (and /stats). Tests can also queue exact
responses with `script()`. `request_log=PATH` (`--request-log`) appends one
JSON line per request: time, path, headers, body and the fault it got.

Process mode runs on uvloop when it is installed (less of the server's own CPU
in every measured latency); the in-process server runs on the caller's loop.

With `validate=True`, every request body is checked against the request
schemas of OpenAI's published OpenAPI document; a body that fails gets a 400
naming the problem and is kept in `validation_errors`. The schemas are in
`gauge/assets/openai-openapi-subset.json`: a copy of the subset in the project's
shared specs folder (github.com/openai/openai-openapi, spec 2.3.0, unchanged); see
openai_schema.py. The answers are built in openai_replies.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gauge.testing import faults as fault
from gauge.testing import server_process
from gauge.testing.faults import Faults, RequestLog
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
    fault: str | None = None
    """What the answer was, when not the normal one: an injected fault ("storm",
    "error", "reset", "hang", "malformed", "truncate", "trickle"), "rate_limit",
    "scripted" or "invalid" (a 400)."""


@dataclass(slots=True)
class ScriptedResponse:
    """A response to send instead of the normal one (queued with `script()`)."""

    status: int = 200
    json: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[str, dict[str, Any]], dict[str, Any] | None]
"""(path, request body) -> response body, or None for the default reply."""


def _fault_rate(name: str) -> Any:
    """A server attribute that reads and sets one rate of `self.faults`."""

    def get(self: OpenAIServer) -> float:
        return float(getattr(self.faults, name))

    def set_(self: OpenAIServer, value: float) -> None:
        setattr(self.faults, name, value)

    return property(get, set_, doc=f"Fraction of requests given the {name[:-5]} fault.")


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
        reset_rate: float = 0.0,
        truncate_rate: float = 0.0,
        trickle_rate: float = 0.0,
        trickle_delay: float = 0.05,
        storm_rate: float = 0.0,
        storm_seconds: float = 1.0,
        storm_retry_after: bool = True,
        sporadic_rate: float = 0.0,
        request_log: str | None = None,
        capacity: int | None = None,
    ) -> None:
        self.faults = Faults(
            error_rate=error_rate,
            reset_rate=reset_rate,
            hang_rate=hang_rate,
            malformed_rate=malformed_rate,
            truncate_rate=truncate_rate,
            trickle_rate=trickle_rate,
            trickle_delay=trickle_delay,
            storm_rate=storm_rate,
            storm_seconds=storm_seconds,
            storm_retry_after=storm_retry_after,
            sporadic_rate=sporadic_rate,
            seed=seed,
        )
        """Injected faults: rates, settings and counts (see gauge.testing.faults)."""
        self.host = host
        self.port = port
        self.latency = latency
        self.capacity = capacity
        """Requests worked on at once (None: any number); the rest queue for their turn,
        as on an inference server with a fixed batch."""
        self._turns: asyncio.Semaphore | None = None
        self.rate_limit = rate_limit
        self.tokens_per_minute = tokens_per_minute
        self.token_window = token_window
        self.rate_headers = rate_headers
        self.rejected = 0
        """Requests answered 429 by the rate limits."""
        self.retry_after = retry_after
        self.validate = validate
        self.record = record
        self.reply = reply
        self.responder: Responder | None = None
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self.count = 0
        """Requests received (all endpoints, failed ones included)."""
        self.request_log = request_log
        self._log: RequestLog | None = None
        self._script: deque[ScriptedResponse] = deque()
        self._request_times: deque[float] = deque()
        self._token_times: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    error_rate = _fault_rate("error_rate")
    reset_rate = _fault_rate("reset_rate")
    hang_rate = _fault_rate("hang_rate")
    malformed_rate = _fault_rate("malformed_rate")
    truncate_rate = _fault_rate("truncate_rate")
    trickle_rate = _fault_rate("trickle_rate")
    storm_rate = _fault_rate("storm_rate")
    sporadic_rate = _fault_rate("sporadic_rate")

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
        if self.request_log is not None:
            self._log = RequestLog(self.request_log)
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
        if self._log is not None:
            self._log.close()
            self._log = None

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
        counts = dict(self.faults.counts)
        return _json({"requests": self.count, "rejected": self.rejected, "faults": counts})

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
            self._note(
                request, raw.decode(errors="replace"), self._remember(request, raw), "invalid"
            )
            return _error(400, "We could not parse the JSON body of your request.")
        recorded = self._remember(request, body) if self.record else None
        if self._script:
            self._note(request, body, recorded, "scripted")
            scripted = self._script.popleft()
            if scripted.raw is not None:
                return web.Response(
                    status=scripted.status, body=scripted.raw, headers=scripted.headers
                )
            return _json(scripted.json, scripted.status, scripted.headers)
        if self.validate and (problem := validate_request(kind, body)) is not None:
            self.validation_errors.append(f"{kind}: {problem}")
            self._note(request, body, recorded, "invalid")
            return _error(400, f"Invalid request body: {problem}")
        if not isinstance(body, dict) or not body.get("model"):
            self._note(request, body, recorded, "invalid")
            return _error(400, "you must provide a model parameter")
        data = None
        if self.tokens_per_minute is not None:
            # The token limit charges what the answer will report as used.
            data = self._reply(kind, body, reply)
        limited, rate_headers = self._limited(data)
        if limited is not None:
            self._note(request, body, recorded, "rate_limit")
            return limited
        stream = bool(body.get("stream"))
        injected, rng = None, None
        if self.faults.active:
            rng = self.faults.rng(raw)
            if (left := self.faults.storm_left(rng)) is not None:
                self._note(request, body, recorded, "storm")
                return fault.storm_response(left, self.faults.storm_retry_after)
            injected = self.faults.pick(rng, stream)
        self._note(request, body, recorded, injected)
        if self.latency > 0:
            await self._work(self.latency)
        if injected == "sporadic":
            return fault.sporadic_response(self.retry_after, rate_headers)
        if injected == "error":
            return _error(
                500, "The server had an error while processing your request.", "server_error"
            )
        if injected == "reset":
            return fault.reset(request)
        if injected == "hang":
            await self._stopping.wait()
            return _error(503, "server stopping")
        if injected == "malformed":
            return web.Response(body=fault.MALFORMED_BODY, content_type="application/json")
        if data is None:
            data = self._reply(kind, body, reply)
        delay = self.faults.trickle_delay if injected == "trickle" else 0.0
        if stream:
            parts = chunks(data, body)
            cut = None
            if injected == "truncate" and rng is not None:
                cut = fault.truncation_point(parts, rng)
            return await fault.sse(request, parts, rate_headers, delay, cut)
        if delay:
            return await fault.trickle_json(request, data, delay, rate_headers)
        return _json(data, headers=rate_headers)

    def _note(
        self,
        request: web.Request,
        body: Any,
        recorded: RecordedRequest | None,
        injected: str | None,
    ) -> None:
        """Record the fault a request got (and log the request, when logging)."""
        if recorded is not None:
            recorded.fault = injected
        if self._log is not None:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self._log.write(request.path, headers, body, injected)

    def _reply(
        self, kind: str, body: dict[str, Any], reply: Callable[..., dict[str, Any]]
    ) -> dict[str, Any]:
        data = self.responder(kind, body) if self.responder else None
        return reply(body, self.reply) if data is None else data

    async def _work(self, seconds: float) -> None:
        """Spend `seconds` on a request, at most `capacity` at once."""
        if self.capacity is None:
            await asyncio.sleep(seconds)
            return
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.capacity)
        async with self._turns:
            await asyncio.sleep(seconds)

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

    def _remember(self, request: web.Request, body: Any) -> RecordedRequest | None:
        if not self.record:
            return None
        recorded = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        self.requests.append(recorded)
        return recorded


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


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (see gauge.testing.server_process), on uvloop when installed."""
    use_fast_loop()
    server_process.main(OpenAIServer, argv)


def use_fast_loop() -> bool:
    """Run new event loops on uvloop when it is installed; whether it is.

    The process mode is a benchmark yardstick: its own CPU queues every request it
    answers (asyncio's loop: 0.12-0.13 ms per request, uvloop's: 0.095). What it
    emulates (latency, limits, faults) is the same on both loops.
    """
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


if __name__ == "__main__":
    main()
