"""The in-process vLLM engine: `vllm/<model>` on this machine's GPUs.

    vllm/meta-llama/Llama-3.1-8B-Instruct -M device='0,1'
    vllm/local -M model_path=/models/llama -M gpu_memory_utilization=0.8

Needs the `vllm` package and a CUDA GPU. Without either, building the provider
fails with one line pointing to server mode: run `vllm serve MODEL` anywhere and
set VLLM_BASE_URL, which speaks the OpenAI wire format.

vLLM batches concurrent requests itself (continuous batching), so this module
only translates: messages through the model's chat template to token ids,
GenerateConfig to SamplingParams (see `sampling`), and the final RequestOutput
to a ModelOutput. The engine starts on the first request, in a thread, so the
event loop is never blocked by model loading. `-M device=` sets
CUDA_VISIBLE_DEVICES before the engine starts, and tensor_parallel_size to the
number of devices. See docs/gpu.md for verifying it on a GPU machine.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from typing import Any, ClassVar

from gauge.errors import ConfigError, MissingExtra
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.providers.hf.tokens import TokenBytes
from gauge.model.providers.vllm_engine.sampling import (
    HONOURED,
    engine_kwargs,
    sampling_kwargs,
    to_output,
)
from gauge.model.registry import is_importable
from gauge.model.tools import ToolChoice, ToolInfo

SERVER_HINT = (
    "or run `vllm serve MODEL` on a GPU machine and set VLLM_BASE_URL "
    "(e.g. http://gpu-host:8000/v1) to use it over the OpenAI wire format"
)

_request_ids = itertools.count()


def unavailable_reason() -> str | None:
    """Why the in-process engine cannot run here, or None when it can."""
    if not is_importable("vllm"):
        return "the vllm package is not installed"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


class VLLMAPI(ModelAPI):
    """vLLM's AsyncLLMEngine in this process (GPU only)."""

    name: ClassVar[str] = "vllm"
    api_key_vars: ClassVar[tuple[str, ...] | None] = ()
    base_url_vars: ClassVar[tuple[str, ...] | None] = ()
    honours: ClassVar[frozenset[str]] = HONOURED
    model_arg_names: ClassVar[frozenset[str]] = frozenset({"model_path", "device", "seed"})
    """The model args read here (`seed` is the engine's); the rest go to AsyncEngineArgs."""
    model_args_go_to: ClassVar[str] = "vLLM's AsyncEngineArgs"

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        engine: Any = None,
        sampling_params: Any = None,
        **model_args: Any,
    ) -> None:
        """`engine` and `sampling_params` replace vLLM's own (tests pass fakes)."""
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self._engine_kwargs, self._devices = engine_kwargs(model_name, model_args)
        if engine is None:
            reason = unavailable_reason()
            if reason is not None:
                raise MissingExtra(
                    f"vllm/{model_name} runs vLLM in-process, but {reason}: "
                    f"pip install vllm on a CUDA machine, {SERVER_HINT}"
                )
        self._engine = engine
        self._params = sampling_params
        self._starting: asyncio.Future[Any] | None = None
        self._token_bytes: TokenBytes | None = None
        self._tokenizer: Any = None

    def max_connections(self) -> int:
        # vLLM schedules its own batches; let it see plenty of requests at once.
        return 256

    def scoring_unsupported(self) -> str:
        return (
            f"vllm/{self.model_name} in process does not score loglikelihoods; serve it "
            "(`vllm serve MODEL`, or `gauge serve --engine vllm`) and use vllm/ with "
            "VLLM_BASE_URL, which scores through prompt logprobs, or use hf/"
        )

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise ConfigError(
                "the in-process vllm engine does not parse tool calls; use server mode "
                "(VLLM_BASE_URL) with a tool-call parser, or call without tools"
            )
        engine = await self._ready()
        params = self._params(**sampling_kwargs(config))
        prompt = {"prompt_token_ids": self._prompt_ids(input)}
        final = None
        async for partial in engine.generate(prompt, params, f"gauge-{next(_request_ids)}"):
            final = partial
        if final is None:
            raise ConfigError("vllm returned no output for the request; check the server log")
        return to_output(final, self.model_name, config.top_logprobs or 0, self._token_bytes)

    async def close(self) -> None:
        engine = self._engine
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()

    async def _ready(self) -> Any:
        """The engine and its tokenizer, started once (in a thread: loading is slow)."""
        if self._engine is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(asyncio.to_thread(self._start_engine))
            self._engine = await asyncio.shield(self._starting)
        if self._params is None:
            from vllm import SamplingParams

            self._params = SamplingParams
        if self._tokenizer is None:
            tokenizer = self._engine.get_tokenizer()
            # AsyncLLMEngine's get_tokenizer is a coroutine in some vLLM releases only.
            self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
            self._token_bytes = TokenBytes(self._tokenizer)
        return self._engine

    def _start_engine(self) -> Any:
        if self._devices is not None:
            # Must be set before CUDA is initialised in this process.
            os.environ["CUDA_VISIBLE_DEVICES"] = self._devices
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        return AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**self._engine_kwargs))

    def _prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        turns = [{"role": m.role, "content": m.text} for m in messages]
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(tokenizer("\n\n".join(t["content"] for t in turns))["input_ids"])
