"""hf/<model>: transformers models in-process, with dynamic batching.

    hf/gauge-tiny                        the bundled offline model
    hf/Qwen/Qwen2.5-0.5B-Instruct        a Hub id (cached locally when offline)
    hf/./my-model                        a directory saved with save_pretrained
    hf/local -M model_path=DIR -M tokenizer_path=DIR

Concurrent requests share batches (see `engine`): every request waiting when the
model is free goes into the next `generate` call, up to max_connections (default
32) per batch. Loading and generation run on one worker thread, off the event
loop. Providers built from the same weights and load settings share one loaded
model and one engine. Model args are described in `loading`; the generation
semantics (greedy default, usage, logprobs) in `generation`; loglikelihood
scoring (lm-eval's HFLM rules, on the same worker thread) in `scoring`;
token-by-token streaming in `streaming`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from gauge.errors import ConfigError
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.providers.hf import loading, scoring
from gauge.model.providers.hf.engine import BatchEngine
from gauge.model.providers.hf.generation import Generator, GenRequest, GenResult, Sampling
from gauge.model.providers.hf.output import build_output
from gauge.model.providers.hf.streaming import TextStream, stream_tokens
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.tools import ToolChoice, ToolInfo

DEFAULT_BATCH = 32


class LocalEngine:
    """A lazily loaded model with its batching engine, shared by providers."""

    def __init__(self, spec: loading.LoadSpec) -> None:
        self.spec = spec
        self.generator: Generator | None = None
        self.engine: BatchEngine[GenRequest, GenResult] = BatchEngine(self._run, name="gauge-hf")
        self.users = 0

    def _run(self, requests: list[GenRequest]) -> list[GenResult | BaseException]:
        # Runs on the worker thread: the first batch loads the model there.
        if self.generator is None:
            self.generator = Generator(loading.load(self.spec))
        return self.generator.run(requests)

    async def ensure_loaded(self) -> Generator:
        """Load the model now (on the worker thread) and return its generator."""

        def load() -> Generator:
            if self.generator is None:
                self.generator = Generator(loading.load(self.spec))
            return self.generator

        return await self.engine.run_in_worker(load)


_engines: dict[loading.LoadSpec, LocalEngine] = {}
_engines_lock = threading.Lock()


def _acquire(spec: loading.LoadSpec) -> LocalEngine:
    with _engines_lock:
        engine = _engines.get(spec)
        if engine is None:
            engine = _engines[spec] = LocalEngine(spec)
        engine.users += 1
        return engine


def _release(engine: LocalEngine) -> None:
    with _engines_lock:
        engine.users -= 1
        if engine.users <= 0 and _engines.get(engine.spec) is engine:
            del _engines[engine.spec]
            engine.engine.close()


class HuggingFaceAPI(ModelAPI):
    """Local transformers causal LMs with dynamic batching."""

    extra: ClassVar[str | None] = "hf"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    api_key_vars: ClassVar[tuple[str, ...] | None] = ()
    base_url_vars: ClassVar[tuple[str, ...] | None] = ()
    supports_streaming: ClassVar[bool] = True
    supports_loglikelihood: ClassVar[bool] = True
    model_arg_names: ClassVar[frozenset[str]] = loading.MODEL_ARGS | {"batch_size", "tokenizer"}
    """The model args it reads (docs/local-models.md)."""
    model_args_go_to: ClassVar[str] = "AutoModelForCausalLM.from_pretrained"
    honours: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "seed",
            "stop_seqs",
            "num_choices",
            "logprobs",
            "top_logprobs",
            "frequency_penalty",
            "presence_penalty",
            "logit_bias",
        }
    )

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        args = dict(model_args)
        # lm-eval's names: batch_size is the batch for generation and scoring,
        # tokenizer the tokenizer to load (our tokenizer_path).
        self._batch = _batch_size(args.pop("batch_size", None))
        tokenizer = args.pop("tokenizer", None)
        if tokenizer is not None:
            if args.get("tokenizer_path") not in (None, tokenizer):
                raise ConfigError(
                    "-M tokenizer and -M tokenizer_path name different tokenizers; give one"
                )
            args["tokenizer_path"] = tokenizer
        self._local = _acquire(loading.spec_from_args(model_name, args))
        self._closed = False

    @property
    def spec(self) -> loading.LoadSpec:
        """Which weights this model loads, and how (the eval pre-flight checks them)."""
        return self._local.spec

    @property
    def engine(self) -> BatchEngine[GenRequest, GenResult]:
        """The batching engine (shared with providers loading the same weights)."""
        return self._local.engine

    async def load(self) -> None:
        """Load the model now instead of on the first request."""
        await self._local.ensure_loaded()

    def max_connections(self) -> int:
        return self._batch

    def max_connections_limit(self) -> int:
        # Batches are capped at the batch size: more in flight would only wait.
        return self._batch

    def connection_key(self) -> str:
        # One limiter per loaded model: hf/local names many different models.
        spec = self._local.spec
        return f"hf|{spec.model_path}|{spec.device}|{spec.dtype}"

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        _refuse_tools(tools)
        request = GenRequest(input, Sampling.from_config(config))
        result = await self._local.engine.submit(request, config.max_connections or self._batch)
        return self._output(result)

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        """Yield the first choice's text token by token as the worker thread makes it."""
        _refuse_tools(tools)
        sampling = Sampling.from_config(config)

        def submit(on_token: Callable[[int, int], bool]) -> Any:
            request = GenRequest(input, sampling, on_token=on_token)
            return self._local.engine.submit(request, config.max_connections or self._batch)

        def new_stream() -> TextStream:
            generator = self._local.generator
            assert generator is not None  # tokens arrive only once the model is loaded
            return TextStream(generator.loaded.tokenizer, generator.eos_ids, sampling.stop)

        async for item in stream_tokens(submit, new_stream):
            if isinstance(item, str):
                if item:
                    yield item
            else:
                output = self._output(item)
                yield StreamInfo(usage=output.usage, stop_reason=output.stop_reason)

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        return await scoring.score_queue(self._local).submit("pairs", requests)

    async def loglikelihood_rolling(
        self, texts: list[str], config: GenerateConfig
    ) -> list[Loglikelihood]:
        return await scoring.score_queue(self._local).submit("rolling", texts)

    def score_batch_size(self) -> int:
        return self._batch

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._local)

    def _output(self, result: GenResult) -> ModelOutput:
        generator = self._local.generator
        assert generator is not None  # a result exists only once the model is loaded
        return build_output(result, self.model_name, generator.token_bytes)


def _refuse_tools(tools: list[ToolInfo]) -> None:
    if tools:
        raise ConfigError(
            "the hf provider does not support tools; call it without tools "
            "or serve the model behind an OpenAI-compatible server that parses tool calls"
        )


def _batch_size(value: Any) -> int:
    if value is None:
        return DEFAULT_BATCH
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"-M batch_size={value} must be a whole number >= 1")
    return number
