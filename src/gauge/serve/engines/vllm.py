"""The vLLM engine: vLLM's AsyncLLMEngine in this process (CUDA GPU, import-guarded).

vLLM batches concurrent requests itself (continuous batching) and streams
tokens as they are produced; this module translates `EngineRequest` to
`vllm.SamplingParams` and a prompt, and vLLM's cumulative `RequestOutput`s
back to deltas and results. Every model setting of the worker is passed to
`AsyncEngineArgs` (`engine_args(settings)`, a pure function, builds the
keywords), vLLM's own parallelism included: tensor_parallel_size,
pipeline_parallel_size, data_parallel_size and distributed_executor_backend
(mp on one node, ray across nodes; docs/gpu.md). Beam search (use_beam_search, length_penalty,
early_stopping) and best_of > n are refused: current vLLM removed them from
SamplingParams.

Prompt logprobs map to `SamplingParams(prompt_logprobs=k)`; vLLM's
`RequestOutput.prompt_logprobs` (None for the first token, then a dict of token
id -> Logprob(logprob, rank, decoded_token) holding the prompt token and the
top k) becomes `PromptLogprob`s. `max_tokens: 0` runs with max_tokens 1 and
drops the generated token, as vLLM's own server does for echo without
generation.

`engine` and `sampling_params` may be passed in (tests use fakes); otherwise
`vllm` is imported on `load`, and a missing package or GPU is a one-line error.
`gauge serve` checks the package (and ray, when asked for) before it binds its
port (`require`): a server that cannot load its model never listens.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import sys
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
    PromptLogprob,
    SamplingParams,
    TokenInfo,
    TokenizeRequest,
    hf_tokenizer_info,
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
    # parallelism: validated in gauge.serve.settings, run by vLLM itself
    "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "data_parallel_size": "data_parallel_size",
    "distributed_executor_backend": "distributed_executor_backend",
}
_ids = itertools.count()

NO_VLLM = (
    "the vllm engine needs the vllm package{what}: pip install vllm on a CUDA GPU "
    "machine, or use --engine transformers"
)
NO_RAY = (
    "DISTRIBUTED_EXECUTOR_BACKEND=ray needs the ray package: pip install "
    "'ray[default]' on every node and start the cluster (docs/gpu.md), "
    "or use mp on one node"
)


def require(settings: Settings) -> None:
    """Fail now, with one line, if vllm (or ray, when the settings ask for it) cannot be
    imported here: before the server binds its port and starts loading."""
    if "vllm" not in sys.modules and not _importable("vllm"):
        raise MissingExtra(NO_VLLM.format(what=""))
    if settings.distributed_executor_backend == "ray" and not _importable("ray"):
        raise MissingExtra(NO_RAY)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module in sys.modules without a spec
        return module in sys.modules


def engine_args(settings: Settings) -> dict[str, Any]:
    """The `AsyncEngineArgs` keywords for `settings`: the model, then every setting given.

    A setting left unset (None) or off (False) is left out, so vLLM's own default
    applies (a single GPU unless a parallel size says otherwise).
    """
    args: dict[str, Any] = {"model": settings.model_name}
    for field, keyword in _ENGINE_ARGS.items():
        value = getattr(settings, field)
        if value is not None and value is not False:
            args[keyword] = value
    return args


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
        "continue_final_message",
        "echo",
        "prompt_logprobs",
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
        """Every model setting that is set becomes an AsyncEngineArgs keyword (`engine_args`)."""
        from gauge.serve.engines.transformers import _read_template

        return cls(
            settings.model_name,
            engine_args(settings),
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
            raise MissingExtra(NO_VLLM.format(what=f" ({ex.name})")) from ex
        if (
            self.engine_args.get("distributed_executor_backend") == "ray"
            and importlib.util.find_spec("ray") is None
        ):
            raise MissingExtra(NO_RAY)
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
        score_only = request.sampling.max_tokens == 0
        final = None
        prompt = await self._prompt(request)
        async for output in self._engine.generate(prompt, params, f"gauge-{next(_ids)}"):
            final = output
            if score_only:
                continue  # the one token vLLM had to generate is dropped
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
        if score_only:
            for index in range(request.sampling.n):
                yield Delta(index, echo, "length")
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
            # vLLM generates at least one token; max_tokens 0 drops it (see module doc).
            "max_tokens": 1 if p.max_tokens == 0 else p.max_tokens,
            "logprobs": p.logprobs,
        }
        if request.prompt_logprobs is not None:
            kwargs["prompt_logprobs"] = request.prompt_logprobs
        if p.logit_bias:
            kwargs["logit_bias"] = dict(p.logit_bias)
        return kwargs

    async def _prompt(self, request: EngineRequest) -> dict[str, Any]:
        if isinstance(request.prompt, list):
            return {"prompt_token_ids": request.prompt}
        if isinstance(request.prompt, str):
            return {"prompt": request.prompt}
        # The template holds its own special tokens: tokenized here without adding them
        # (as vLLM's server and /tokenize do), where a text prompt would get a second BOS.
        return {"prompt_token_ids": await self.tokenize(_as_tokenize(request))}

    def _echo_text(self, request: EngineRequest) -> str:
        if isinstance(request.prompt, str):
            return request.prompt
        if isinstance(request.prompt, list):
            text: str = self._tokenizer.decode(request.prompt)
            return text
        return request.echo_text

    def _chat_text(self, request: EngineRequest | TokenizeRequest) -> str:
        turns = [{"role": m.role, "content": m.text} for m in request.messages or []]
        options: dict[str, Any] = {"add_generation_prompt": request.add_generation_prompt}
        if request.continue_final_message:
            options = {"add_generation_prompt": False, "continue_final_message": True}
        try:
            chat: str = self._tokenizer.apply_chat_template(turns, tokenize=False, **options)
        except Exception as ex:  # jinja errors, or transformers' own checks
            raise ConfigError(
                f"cannot build the prompt with the model's chat template: {ex}"
            ) from ex
        return chat

    def _result(self, final: Any, request: EngineRequest, echo: str) -> EngineResult:
        k = request.sampling.logprobs
        prompt_ids = list(final.prompt_token_ids or ())
        scores = None
        if request.prompt_logprobs is not None:
            scores = self.prompt_scores(
                prompt_ids, final.prompt_logprobs or [], request.prompt_logprobs
            )
        if request.sampling.max_tokens == 0:
            lps: list[TokenInfo] | None = [] if k is not None else None
            choices = [Choice(echo, "length", 0, lps) for _ in range(request.sampling.n)]
            return EngineResult(len(prompt_ids), choices, prompt_logprobs=scores)
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
        return EngineResult(len(prompt_ids), choices, prompt_logprobs=scores)

    def prompt_scores(
        self, ids: list[int], positions: list[dict[int, Any] | None], k: int
    ) -> list[PromptLogprob]:
        """vLLM's PromptLogprobs (None first, then {token id: Logprob}) as PromptLogprobs."""
        special = set(getattr(self._tokenizer, "all_special_ids", None) or [])
        out = []
        for i, token_id in enumerate(ids):
            entries = positions[i] if i < len(positions) else None
            text = self._decoded(token_id, entries)
            if not entries or token_id not in entries:
                out.append(PromptLogprob(token_id, text, None, None, special=token_id in special))
                continue
            ranked = sorted(
                (t for t, e in entries.items() if e.rank is not None and e.rank <= k),
                key=lambda t: entries[t].rank,
            )
            top = [
                (t, self._decoded(t, entries), entries[t].logprob, entries[t].rank) for t in ranked
            ]
            chosen = entries[token_id]
            out.append(
                PromptLogprob(
                    token_id, text, chosen.logprob, chosen.rank, top, special=token_id in special
                )
            )
        return out

    def _decoded(self, token_id: int, entries: dict[int, Any] | None) -> str:
        entry = entries.get(token_id) if entries else None
        text = getattr(entry, "decoded_token", None)
        if text is None:
            text = self._tokenizer.decode([token_id])
        return str(text)

    async def tokenize(self, request: TokenizeRequest) -> list[int]:
        if request.messages is not None:
            text = await asyncio.to_thread(self._chat_text, request)
            special = bool(request.add_special_tokens)  # vLLM: a chat template holds its own
        else:
            text = request.prompt or ""
            special = request.add_special_tokens is not False
        ids = await asyncio.to_thread(self._tokenizer.encode, text, add_special_tokens=special)
        return list(ids)

    async def detokenize(self, ids: list[int]) -> str:
        return str(await asyncio.to_thread(self._tokenizer.decode, ids))

    async def tokenizer_info(self) -> dict[str, Any]:
        return hf_tokenizer_info(self._tokenizer, self.max_model_len)

    async def token_texts(self, ids: list[int]) -> list[str]:
        return [self._tokenizer.decode([t]) for t in ids]

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


def _as_tokenize(request: EngineRequest) -> TokenizeRequest:
    return TokenizeRequest(
        messages=request.messages,
        add_generation_prompt=request.add_generation_prompt,
        continue_final_message=request.continue_final_message,
    )


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"
