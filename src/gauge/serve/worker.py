"""The RunPod serverless handler: the same engines, driven by job inputs instead of HTTP.

    python -m gauge.serve.worker      # runpod.serverless.start(...) with MODEL_NAME etc. from env

Two input forms, as the RunPod vLLM worker takes them:

* OpenAI route form: `{"openai_route": "/v1/chat/completions", "openai_input": {...}}`
  (also /v1/completions and /v1/models). The output is the OpenAI response body;
  a stream yields its SSE events (RAW_OPENAI_OUTPUT=1, the default: the raw
  `data: ...` text, several events per yield) or the chunk objects (0). A
  refused request yields `{"status": 400, "error": {...OpenAI error...}}`.
* Standard form: `{"prompt": "..."}` or `{"messages": [...]}`, with
  `apply_chat_template`, `sampling_params` (vLLM's names), `stream`,
  `max_batch_size`, `min_batch_size`, `batch_size_growth_factor`. The output is
  `{"choices": [{"tokens": [...]}], "usage": {"input": n, "output": m}}`; a
  stream yields the tokens in groups whose size starts at min_batch_size and
  grows by the factor up to max_batch_size (1, 3, 9, 27, 50, 50, ... by default).

The handler is an async generator, which the runpod SDK runs as a streaming
handler; it needs no SDK itself, so tests drive it directly. Under the SDK's
local test mode (`--test_input '{"input": ...}'` or test_input.json), which
does not iterate generators, `aggregate` runs instead and returns every output
in one list.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from gauge.errors import ConfigError, MissingExtra
from gauge.serve.app import CHAT_ROUTE, COMPLETIONS_ROUTE, Server
from gauge.serve.engines.base import Delta, Engine, EngineResult
from gauge.serve.schemas import APIError, parse_chat, parse_completion
from gauge.serve.settings import Settings

MODELS_ROUTE = "/v1/models"


def batch_sizes(minimum: int, maximum: int, factor: float) -> Iterator[int]:
    """The growth schedule: minimum, minimum*factor, ... capped at maximum, forever."""
    size = float(minimum)
    while True:
        yield max(1, min(maximum, math.floor(size)))
        size = min(float(maximum), size * factor)


class Worker:
    """Answers RunPod jobs with one engine (started on the first job)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.server = Server(engine, settings)
        self.settings = settings
        self._starting: asyncio.Task[None] | None = None

    async def handler(self, job: dict[str, Any]) -> AsyncIterator[Any]:
        """The RunPod handler: one job in, its outputs yielded."""
        try:
            await self._ready()
            data = job.get("input")
            if not isinstance(data, dict):
                raise APIError("the job's input must be an object")
            if "openai_route" in data:
                async for out in self._openai(data):
                    yield out
            else:
                async for out in self._standard(data):
                    yield out
        except APIError as ex:
            yield {"status": ex.status, **ex.body()}

    async def aggregate(self, job: dict[str, Any]) -> list[Any]:
        """Every output of a job in one list (what `return_aggregate_stream` gives /run)."""
        return [out async for out in self.handler(job)]

    def concurrency(self, current: int) -> int:
        """RunPod's concurrency_modifier: jobs taken at once (MAX_CONCURRENCY)."""
        return self.settings.max_concurrency

    async def _ready(self) -> None:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self.server.start())
        await asyncio.shield(self._starting)
        if self.server.start_error is not None:
            raise APIError(f"the engine failed to start: {self.server.start_error}", 503)

    async def _openai(self, data: dict[str, Any]) -> AsyncIterator[Any]:
        route = data["openai_route"]
        if route == MODELS_ROUTE:
            from gauge.serve.responses import model_list

            yield model_list(self.server.model, self.server.engine.created)
            return
        answer = await self.server.complete(route, data.get("openai_input"))
        if isinstance(answer, dict):
            yield answer
            return
        body = data.get("openai_input") or {}
        sizes = self._sizes(body)
        group: list[bytes] = []
        target = next(sizes)
        async for event in answer:
            group.append(event)
            if len(group) >= target:
                yield self._events(group)
                group, target = [], next(sizes)
        if group:
            yield self._events(group)

    def _events(self, events: list[bytes]) -> Any:
        if self.settings.raw_openai_output:
            return b"".join(events).decode()
        return [orjson.loads(e[6:]) for e in events if not e.startswith(b"data: [DONE]")]

    async def _standard(self, data: dict[str, Any]) -> AsyncIterator[Any]:
        known = {
            "prompt",
            "messages",
            "apply_chat_template",
            "sampling_params",
            "stream",
            "max_batch_size",
            "min_batch_size",
            "batch_size_growth_factor",
        }
        for key in data:
            if key not in known:
                raise APIError(f"{key}: is not an input field; remove it", param=key)
        params = data.get("sampling_params") or {}
        if not isinstance(params, dict):
            raise APIError("sampling_params: must be an object", param="sampling_params")
        body = {**params, "model": self.server.model, "stream": bool(data.get("stream"))}
        engine = self.server.engine
        if data.get("messages") is not None:
            if data.get("apply_chat_template") is False:
                raise APIError(
                    "apply_chat_template: messages always go through the chat template; "
                    "send a prompt instead",
                    param="apply_chat_template",
                )
            parsed = parse_chat({**body, "messages": data["messages"]}, engine.honours, engine.name)
        elif data.get("prompt") is not None:
            prompt = data["prompt"]
            if data.get("apply_chat_template"):
                parsed = parse_chat(
                    {**body, "messages": [{"role": "user", "content": prompt}]},
                    engine.honours,
                    engine.name,
                )
            else:
                parsed = parse_completion({**body, "prompt": prompt}, engine.honours, engine.name)
                if params.get("max_tokens") is None:
                    for request in parsed.requests:
                        request.sampling.max_tokens = None  # vLLM's default: up to the context
        else:
            raise APIError("the input needs a prompt or messages", param="prompt")
        if len(parsed.requests) != 1:
            raise APIError("prompt: must be one string or one list of token ids", param="prompt")
        [request] = parsed.requests
        try:
            if not parsed.stream:
                result = await engine.generate(request)
                yield _standard_output([[c.text] for c in result.choices], result)
                return
            sizes = self._sizes(data)
            pending: dict[int, list[str]] = {}
            target = next(sizes)
            async for item in engine.stream(request):
                if isinstance(item, EngineResult):
                    # The last group carries the usage (it may hold no tokens).
                    yield _standard_output(_grouped(pending, request.sampling.n), item)
                    return
                assert isinstance(item, Delta)
                if item.text:
                    pending.setdefault(item.index, []).append(item.text)
                if sum(len(v) for v in pending.values()) >= target:
                    yield _standard_output(_grouped(pending, request.sampling.n), None)
                    pending, target = {}, next(sizes)
        except ConfigError as ex:
            raise APIError(str(ex)) from ex

    def _sizes(self, data: dict[str, Any]) -> Iterator[int]:
        s = self.settings

        def positive(key: str, default: float) -> float:
            value = data.get(key, default)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 1:
                raise APIError(f"{key}: must be a number >= 1", param=key)
            return float(value)

        return batch_sizes(
            int(positive("min_batch_size", s.default_min_batch_size)),
            int(positive("max_batch_size", s.default_batch_size)),
            positive("batch_size_growth_factor", s.default_batch_size_growth_factor),
        )


def _grouped(pending: dict[int, list[str]], n: int) -> list[list[str]]:
    return [pending.get(i, []) for i in range(n)]


def _standard_output(tokens: list[list[str]], result: EngineResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": [{"tokens": t} for t in tokens]}
    if result is not None:
        out["usage"] = {"input": result.prompt_tokens, "output": result.completion_tokens}
    return out


def main() -> None:
    """Start the RunPod serverless loop (settings from the environment)."""
    try:
        import runpod
    except ModuleNotFoundError:
        raise MissingExtra(
            "the serverless worker needs the runpod SDK: pip install 'gauge[runpod]'"
        ) from None
    from gauge.serve.engines import build_engine
    from gauge.serve.settings import banner, load_settings

    settings = load_settings()  # worker-vllm's names: MODEL_NAME, MAX_MODEL_LEN, ...
    # The worker has no HTTP server of its own: no host, port or key to show.
    for line in banner(settings, always=("engine", "model_name")):
        print(line, file=sys.stderr)
    worker = Worker(build_engine(settings), settings)
    # The SDK's local test mode (--test_input, test_input.json) runs a handler once and
    # does not iterate generators, so there the outputs are aggregated into one list.
    local = os.environ.get("RUNPOD_WEBHOOK_GET_JOB") is None and "--rp_serve_api" not in sys.argv
    runpod.serverless.start(
        {
            "handler": worker.aggregate if local else worker.handler,
            "concurrency_modifier": worker.concurrency,
            "return_aggregate_stream": True,
        }
    )


__all__ = ["CHAT_ROUTE", "COMPLETIONS_ROUTE", "Worker", "batch_sizes", "main"]

if __name__ == "__main__":
    main()
