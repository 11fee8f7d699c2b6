"""The vLLM engine: vLLM's AsyncLLMEngine in this process (CUDA GPU, import-guarded).

vLLM batches concurrent requests itself (continuous batching) and streams
tokens as they are produced; this module translates `EngineRequest` to
`vllm.SamplingParams` and a prompt, and vLLM's cumulative `RequestOutput`s
back to deltas and results. Every model setting of the worker is passed to
`AsyncEngineArgs`. Beam search (use_beam_search, length_penalty,
early_stopping) and best_of > n are refused: current vLLM removed them from
SamplingParams.

`engine` and `sampling_params` may be passed in (tests use fakes); otherwise
`vllm` is imported on `load`, and a missing package or GPU is a one-line error.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from gauge.errors import ConfigError, MissingExtra
from gauge.serve.engines.base import (
    BASIC_FIELDS,
    Choice,
    Delta,
    Engine,
    EngineRequest,
    EngineResult,
    SamplingParams,
    TokenInfo,
)

if TYPE_CHECKING:
    from gauge.serve.settings import Settings

# settings field -> AsyncEngineArgs keyword
_ENGINE_ARGS = {
    "model_revision": "revision",
    "max_model_len": "max_model_len",
    "base_path": "download_dir",
    "load_format": "load_format",
    "quantization": "quantization",
    "trust_remote_code": "trust_remote_code",
    "seed": "seed",
    "kv_cache_dtype": "kv_cache_dtype",
    "dtype": "dtype",
    "tokenizer_name": "tokenizer",
    "tokenizer_revision": "tokenizer_revision",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "max_parallel_loading_workers": "max_parallel_loading_workers",
    "block_size": "block_size",
    "swap_space": "swap_space",
    "enforce_eager": "enforce_eager",
    "max_context_len_to_capture": "max_seq_len_to_capture",
    "disable_custom_all_reduce": "disable_custom_all_reduce",
    "tensor_parallel_size": "tensor_parallel_size",
}
_ids = itertools.count()


class VLLMEngine(Engine):
    """vLLM in-process (see module doc)."""

    name: ClassVar[str] = "vllm"
    honours: ClassVar[frozenset[str]] = BASIC_FIELDS | {
        "top_k",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "stop_token_ids",
        "ignore_eos",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "include_stop_str_in_output",
        "add_generation_prompt",
        "echo",
    }
    uses_settings: ClassVar[frozenset[str]] = frozenset(
        {name.upper() for name in _ENGINE_ARGS} | {"HF_TOKEN", "CUSTOM_CHAT_TEMPLATE"}
    )

    def __init__(
        self,
        model_name: str,
        engine_args: dict[str, Any] | None = None,
        served_name: str | None = None,
        chat_template: str | None = None,
        hf_token: str | None = None,
        engine: Any = None,
        sampling_params: Any = None,
    ) -> None:
        super().__init__(served_name or model_name)
        self.engine_args = {"model": model_name, **(engine_args or {})}
        self._engine = engine
        self._params = sampling_params
        self._chat_template = chat_template
        self._hf_token = hf_token
        self._tokenizer: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> VLLMEngine:
        """Every model setting that is set becomes an AsyncEngineArgs keyword."""
        from gauge.serve.engines.transformers import _read_template

        args = {
            keyword: getattr(settings, field)
            for field, keyword in _ENGINE_ARGS.items()
            if getattr(settings, field) not in (None, False)
        }
        return cls(
            settings.model_name,
            args,
            served_name=settings.served_name,
            chat_template=_read_template(settings.custom_chat_template),
            hf_token=settings.hf_token,
        )

    async def load(self) -> None:
        if self._engine is None:
            self._engine = await asyncio.to_thread(self._start_engine)
        if self._params is None:
            from vllm import SamplingParams as VLLMSamplingParams

            self._params = VLLMSamplingParams
        got = self._engine.get_tokenizer()
        self._tokenizer = await got if asyncio.iscoroutine(got) else got
        if self._chat_template is not None:
            self._tokenizer.chat_template = self._chat_template
        config = getattr(self._engine, "model_config", None)
        self.max_model_len = getattr(config, "max_model_len", None)

    def _start_engine(self) -> Any:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as ex:
            raise MissingExtra(
                f"the vllm engine needs the vllm package ({ex.name}): pip install vllm "
                "on a CUDA machine, or use --engine transformers"
            ) from ex
        if self._hf_token:
            os.environ.setdefault("HF_TOKEN", self._hf_token)
        try:
            return AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**self.engine_args))
        except TypeError as ex:
            raise ConfigError(f"this vllm version rejects a setting: {ex}") from ex

    async def generate(self, request: EngineRequest) -> EngineResult:
        result: EngineResult | None = None
        async for item in self.stream(request):
            if isinstance(item, EngineResult):
                result = item
        assert result is not None  # stream always ends with its result
        return result

    async def stream(self, request: EngineRequest) -> AsyncIterator[Delta | EngineResult]:
        params = self._params(**self.sampling_kwargs(request.sampling, request))
        sent: dict[int, int] = {}
        echo = self._echo_text(request) if request.echo else ""
        final = None
        async for output in self._engine.generate(
            self._prompt(request), params, f"gauge-{next(_ids)}"
        ):
            final = output
            for completion in output.outputs:
                done = sent.get(completion.index, 0)
                text = completion.text
                finished = completion.finish_reason is not None
                if len(text) > done or finished:
                    prefix = echo if done == 0 else ""
                    yield Delta(
                        completion.index,
                        prefix + text[done:],
                        _finish(completion.finish_reason) if finished else None,
                    )
                    sent[completion.index] = len(text)
        if final is None:
            raise ConfigError("vllm returned no output for the request; check the server log")
        yield self._result(final, request, echo)

    def sampling_kwargs(self, p: SamplingParams, request: EngineRequest) -> dict[str, Any]:
        """Keyword arguments for vllm.SamplingParams."""
        kwargs: dict[str, Any] = {
            "n": p.n,
            "temperature": p.temperature if p.temperature is not None else 0.0,
            "top_p": p.top_p if p.top_p is not None else 1.0,
            "top_k": p.top_k if p.top_k is not None and p.top_k > 0 else -1,
            "min_p": p.min_p,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
            "repetition_penalty": p.repetition_penalty,
            "stop": list(p.stop),
            "stop_token_ids": list(p.stop_token_ids),
            "include_stop_str_in_output": p.include_stop_str_in_output,
            "ignore_eos": p.ignore_eos,
            "skip_special_tokens": p.skip_special_tokens,
            "spaces_between_special_tokens": p.spaces_between_special_tokens,
            "seed": p.seed,
            "max_tokens": p.max_tokens,
            "logprobs": p.logprobs,
        }
        if p.logit_bias:
            kwargs["logit_bias"] = dict(p.logit_bias)
        return kwargs

    def _prompt(self, request: EngineRequest) -> dict[str, Any]:
        if isinstance(request.prompt, list):
            return {"prompt_token_ids": request.prompt}
        if isinstance(request.prompt, str):
            return {"prompt": request.prompt}
        return {"prompt": self._echo_text(request)}

    def _echo_text(self, request: EngineRequest) -> str:
        if isinstance(request.prompt, str):
            return request.prompt
        if isinstance(request.prompt, list):
            text: str = self._tokenizer.decode(request.prompt)
            return text
        turns = [{"role": m.role, "content": m.text} for m in request.messages or []]
        chat: str = self._tokenizer.apply_chat_template(
            turns, add_generation_prompt=request.add_generation_prompt, tokenize=False
        )
        return chat

    def _result(self, final: Any, request: EngineRequest, echo: str) -> EngineResult:
        k = request.sampling.logprobs
        choices = []
        for completion in sorted(final.outputs, key=lambda c: c.index):
            logprobs = None
            if k is not None:
                logprobs = [
                    self._token(tid, entries, k)
                    for tid, entries in zip(
                        completion.token_ids, completion.logprobs or [], strict=False
                    )
                ]
            choices.append(
                Choice(
                    echo + completion.text,
                    _finish(completion.finish_reason),
                    len(completion.token_ids),
                    logprobs,
                )
            )
        return EngineResult(len(final.prompt_token_ids or ()), choices)

    def _token(self, token_id: int, entries: dict[int, Any], k: int) -> TokenInfo:
        def describe(tid: int) -> tuple[str, list[int]]:
            entry = entries.get(tid)
            text = getattr(entry, "decoded_token", None)
            if text is None:
                text = self._tokenizer.decode([tid])
            return text, list(text.encode())

        token, data = describe(token_id)
        ranked = sorted(
            (t for t, e in entries.items() if e.rank is not None and e.rank <= k),
            key=lambda t: entries[t].rank,
        )
        top = []
        for t in ranked:
            alt, alt_data = describe(t)
            top.append((alt, entries[t].logprob, alt_data))
        return TokenInfo(token, entries[token_id].logprob, data, top)

    async def close(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        await super().close()


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"
