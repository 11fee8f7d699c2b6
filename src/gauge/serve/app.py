"""The Starlette app: OpenAI's routes over one engine.

    POST /v1/chat/completions   chat (streaming with SSE or not)
    POST /v1/completions        text completions (prompt: text, texts, token ids)
    GET  /v1/models             the served model
    GET  /health                engine state and start-up phase timings (no auth)
    GET  /metrics               Prometheus text
    POST /tokenize, /detokenize the engine's tokenizer, as vLLM's (see gauge.serve.tokenize)
    GET  /openapi.json          this server's OpenAPI document (no auth)
    /v1/files, /v1/batches      OpenAI's batch API over the same engine (see gauge.serve.batch_api)

The engine starts in the background when the app starts, so /health answers
(503, state "loading") while the weights load; generation routes answer 503
with Retry-After until the engine is ready. At most `max_concurrency` requests
are admitted at once; the next gets 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gauge.errors import ConfigError, GaugeError, ModelError, one_line
from gauge.serve import auth, responses, sse
from gauge.serve import tokenize as tokens
from gauge.serve.batch_api import BatchAPI
from gauge.serve.engines.base import Delta, Engine, EngineRequest, EngineResult
from gauge.serve.fastpath import FastStarlette
from gauge.serve.metrics import Metrics
from gauge.serve.schemas import APIError, Parsed, parse_chat, parse_completion
from gauge.serve.settings import Settings

log = logging.getLogger("gauge.serve")

STATS_INTERVAL = 10.0
CHAT_ROUTE = "/v1/chat/completions"
COMPLETIONS_ROUTE = "/v1/completions"


class Server:
    """The state behind the routes: engine, settings, admission count and metrics."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = Metrics()
        self.model = settings.served_name
        self.start_error: str | None = None
        self.ready = asyncio.Event()
        self.started = asyncio.Event()
        """Set when start-up ended, ready or failed."""

    async def start(self) -> None:
        """Start the engine; a failure is kept for /health and logged."""
        try:
            await self.engine.start()
        except Exception as ex:
            self.engine.state = "failed"
            self.start_error = one_line(ex)
            log.error("engine failed to start: %s", self.start_error)
            return
        finally:
            self.started.set()
        self.ready.set()

    async def run(self, route: str, request: Request) -> Response:
        """Authenticate, admit, parse and answer one generation request over HTTP."""
        arrived = time.perf_counter()
        try:
            # scope["path"], not request.url.path: building the URL costs ~5 us a request;
            # and without a key no header lookup (a missing one costs a KeyError inside).
            if self.settings.api_key is not None:
                auth.check(
                    request.scope["path"],
                    request.headers.get("authorization"),
                    self.settings.api_key,
                )
            self._check_ready()
            if self.metrics.running >= self.settings.max_concurrency:
                raise APIError(
                    f"the server is at its limit of {self.settings.max_concurrency} concurrent "
                    "requests; retry after the Retry-After seconds",
                    status=429,
                    type="rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": "1"},
                )
        except APIError as ex:
            return self._error(route, ex)
        self.metrics.running += 1
        release = True
        try:
            answer = await self.complete(route, await _json(request), arrived)
            if isinstance(answer, dict):
                return _json_response(answer)
            release = False  # the stream gives its slot back when it ends
            return StreamingResponse(
                self._released(answer),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        except APIError as ex:
            return self._error(route, ex)
        finally:
            if release:
                self.metrics.running -= 1

    async def complete(
        self, route: str, body: Any, arrived: float | None = None
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        """Answer one request body on `route`: the response body, or a stream's SSE events.

        Every failure is an APIError in OpenAI's shape (the worker relies on it).
        """
        arrived = time.perf_counter() if arrived is None else arrived
        try:
            if route == CHAT_ROUTE:
                parsed = parse_chat(
                    body,
                    self.engine.honours,
                    self.engine.name,
                    response_role=self.settings.openai_response_role,
                )
            elif route == COMPLETIONS_ROUTE:
                parsed = parse_completion(body, self.engine.honours, self.engine.name)
            else:
                raise APIError(f"no route {route!r}; use {CHAT_ROUTE} or {COMPLETIONS_ROUTE}", 404)
            self._check_model(parsed)
            chat = route == CHAT_ROUTE
            if parsed.stream:
                return self._stream(parsed, arrived, chat, route)
            requests = parsed.requests
            if len(requests) == 1:  # the common case: no gather task
                results = [await self.engine.generate(requests[0])]
            else:
                results = list(await asyncio.gather(*(self.engine.generate(r) for r in requests)))
        except APIError:
            raise
        except (ConfigError, ModelError) as ex:
            raise APIError(one_line(ex)) from ex
        except Exception as ex:
            log.exception("request failed")
            raise _internal(ex) from ex
        self._account(results, arrived)
        if chat:
            role = self.settings.openai_response_role
            data = responses.chat_response(self.model, role, results[0])
        else:
            data = responses.completion_response(self.model, results, parsed)
        self.metrics.finished(route, 200)
        self.metrics.latency.observe(time.perf_counter() - arrived)
        if not self.settings.disable_log_requests:
            log.info("%s 200 %d tokens", route, data["usage"]["completion_tokens"])
        return data

    async def batch_complete(self, route: str, body: Any) -> dict[str, Any] | AsyncIterator[bytes]:
        """`complete` for one line of a batch: it waits for the engine to have started."""
        await self.started.wait()
        self._check_ready()
        return await self.complete(route, body)

    async def _released(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event
        finally:
            self.metrics.running -= 1

    async def tokenizer(self, route: str, request: Request) -> Response:
        """Authenticate and answer one /tokenize, /detokenize or /tokenizer_info request."""
        arrived = time.perf_counter()
        try:
            auth.check(route, request.headers.get("authorization"), self.settings.api_key)
            self._check_ready()
            # GET /tokenizer_info has no body (lm-eval reads bos/eos from it).
            body = None if route == tokens.TOKENIZER_INFO_ROUTE else await _json(request)
            data = await tokens.answer(self.engine, self.model, route, body)
        except APIError as ex:
            return self._error(route, ex)
        self.metrics.finished(route, 200)
        self.metrics.latency.observe(time.perf_counter() - arrived)
        return _json_response(data)

    def _check_ready(self) -> None:
        if self.start_error is not None:
            raise APIError(
                f"the engine failed to start: {self.start_error}", 503, type="server_error"
            )
        if not self.ready.is_set():
            raise APIError(
                "the model is still loading; retry shortly",
                503,
                type="server_error",
                headers={"Retry-After": "1"},
            )

    def _check_model(self, parsed: Parsed) -> None:
        if parsed.model != self.model:
            raise APIError(
                f"the model {parsed.model!r} does not exist; this server serves {self.model!r}",
                404,
                param="model",
                code="model_not_found",
            )

    def _error(self, route: str, ex: APIError) -> Response:
        self.metrics.finished(route, ex.status)
        if not self.settings.disable_log_requests:
            log.info("%s %d %s", route, ex.status, ex.message)
        return _json_response(ex.body(), ex.status, ex.headers)

    # -- generation -------------------------------------------------------------------

    def _account(self, results: list[EngineResult], arrived: float) -> None:
        for result in results:
            self.metrics.tokens(result.prompt_tokens, result.completion_tokens)
            self.metrics.queue_time.observe(result.queue_time)
        # Not streamed: the first token reaches the client with the last.
        self.metrics.ttft.observe(time.perf_counter() - arrived)

    async def _stream(
        self, parsed: Parsed, arrived: float, chat: bool, route: str
    ) -> AsyncIterator[bytes]:
        maker = responses.ChunkMaker(chat, self.model, self.settings.openai_response_role)
        n = parsed.n
        results: list[EngineResult] = []
        first = True
        status = 200
        try:
            for p in range(len(parsed.requests)):
                for j in range(n):
                    opening = maker.opening(p * n + j)
                    if opening is not None:
                        yield sse.event(opening)
            async for prompt_index, item in _merge(self.engine, parsed.requests):
                if isinstance(item, EngineResult):
                    results.append(item)
                    continue
                if first and item.text:
                    first = False
                    self.metrics.ttft.observe(time.perf_counter() - arrived)
                yield sse.event(maker.piece(prompt_index * n + item.index, item))
            for result in results:
                self.metrics.tokens(result.prompt_tokens, result.completion_tokens)
                self.metrics.queue_time.observe(result.queue_time)
            if parsed.include_usage:
                yield sse.event(maker.usage(results))
        except (APIError, GaugeError) as ex:
            error = ex if isinstance(ex, APIError) else APIError(one_line(ex))
            status = error.status
            yield sse.event(error.body())
        except Exception as ex:
            log.exception("stream failed")
            status = 500
            yield sse.event(_internal(ex).body())
        finally:
            self.metrics.finished(route, status)
            self.metrics.latency.observe(time.perf_counter() - arrived)
        yield sse.DONE

    # -- the other routes ---------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        try:
            auth.check(
                request.url.path, request.headers.get("authorization"), self.settings.api_key
            )
        except APIError as ex:
            return self._error("/v1/models", ex)
        self.metrics.finished("/v1/models", 200)
        return _json_response(responses.model_list(self.model, self.engine.created))

    async def health(self, request: Request) -> Response:
        phases = self.engine.phases
        body = {
            "status": self.engine.state,
            "engine": self.engine.name,
            "model": self.model,
            "phases": {"load": phases.load, "warmup": phases.warmup},
            "running": self.metrics.running,
            "max_concurrency": self.settings.max_concurrency,
        }
        if self.start_error is not None:
            body["error"] = self.start_error
        return _json_response(body, 200 if self.ready.is_set() else 503)

    async def metrics_text(self, request: Request) -> Response:
        try:
            auth.check(
                request.url.path, request.headers.get("authorization"), self.settings.api_key
            )
        except APIError as ex:
            return self._error("/metrics", ex)
        text = self.metrics.render(self.engine.state)
        return Response(text, media_type="text/plain; version=0.0.4")

    async def log_stats(self) -> None:
        """Log throughput every STATS_INTERVAL seconds while there is traffic."""
        last = (0, 0)
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            m = self.metrics
            now = (sum(m.requests.values()), m.generation_tokens)
            if now != last:
                log.info(
                    "stats: %d running, %d requests, %.1f generated tokens/s",
                    m.running,
                    now[0] - last[0],
                    (now[1] - last[1]) / STATS_INTERVAL,
                )
                last = now


async def _merge(
    engine: Engine, requests: list[EngineRequest]
) -> AsyncIterator[tuple[int, Delta | EngineResult]]:
    """Every prompt's stream, interleaved as items arrive (one prompt needs no task)."""
    if len(requests) == 1:
        async for item in engine.stream(requests[0]):
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Delta | EngineResult | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, request: EngineRequest) -> None:
        try:
            async for item in engine.stream(request):
                await queue.put((index, item))
        except BaseException as ex:
            await queue.put((index, ex))
            raise
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    try:
        open_streams = len(tasks)
        while open_streams:
            index, got = await queue.get()
            if got is None:
                open_streams -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield index, got
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise APIError("the request body is not valid JSON") from None


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _internal(ex: BaseException) -> APIError:
    return APIError(f"internal error: {one_line(ex)}", 500, type="server_error")


def build_app(engine: Engine, settings: Settings) -> Starlette:
    """The ASGI app serving `engine`; the engine starts with the app's lifespan.

    `app.state.server.ready` is set once the engine has loaded and warmed up.
    """
    server = Server(engine, settings)
    batch_api = BatchAPI(settings, server.metrics, server.batch_complete)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await batch_api.open()
        starting = asyncio.create_task(server.start())
        stats = None if settings.disable_log_stats else asyncio.create_task(server.log_stats())
        try:
            yield
        finally:
            await batch_api.close()
            for task in (starting, stats):
                if task is not None:
                    task.cancel()
            await asyncio.gather(starting, *([stats] if stats else []), return_exceptions=True)
            await engine.close()

    async def chat(request: Request) -> Response:
        return await server.run(CHAT_ROUTE, request)

    async def completions(request: Request) -> Response:
        return await server.run(COMPLETIONS_ROUTE, request)

    async def tokenize(request: Request) -> Response:
        return await server.tokenizer(tokens.TOKENIZE_ROUTE, request)

    async def detokenize(request: Request) -> Response:
        return await server.tokenizer(tokens.DETOKENIZE_ROUTE, request)

    async def tokenizer_info(request: Request) -> Response:
        return await server.tokenizer(tokens.TOKENIZER_INFO_ROUTE, request)

    openapi_cache: list[bytes] = []  # built on first request, once every route is known

    async def openapi_json(request: Request) -> Response:
        if not openapi_cache:
            from gauge.serve.openapi import document

            paths = [r.path for r in app.routes if isinstance(r, Route)]
            secured = settings.api_key is not None
            doc = document(server.model, engine.name, engine.honours, secured, paths)
            openapi_cache.append(orjson.dumps(doc))
        return Response(openapi_cache[0], media_type="application/json")

    async def _http_error(request: Request, ex: Exception) -> Response:
        # Starlette's own 404/405 are plain text; clients expect OpenAI's error shape.
        status = ex.status_code if isinstance(ex, HTTPException) else 500
        headers = dict(ex.headers or {}) if isinstance(ex, HTTPException) else {}
        where = f"{request.method} {request.url.path}"
        message = {
            404: f"no route {where}; GET /openapi.json lists the routes",
            405: f"{where} is not allowed; use {headers.get('Allow', 'another method')}",
        }.get(status, f"{where}: {getattr(ex, 'detail', 'error')}")
        error = APIError(message, status, headers=headers)
        return _json_response(error.body(), status, error.headers)

    # The generation routes skip Starlette's routing and middleware (see fastpath).
    app = FastStarlette(
        {CHAT_ROUTE: chat, COMPLETIONS_ROUTE: completions},
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/health", server.health, methods=["GET"]),
            Route("/metrics", server.metrics_text, methods=["GET"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/detokenize", detokenize, methods=["POST"]),
            Route("/tokenizer_info", tokenizer_info, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *batch_api.routes(),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.server = server
    app.state.batch_api = batch_api
    return app
