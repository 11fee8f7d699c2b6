"""Translation between gauge and vLLM's engine: SamplingParams, engine args, outputs.

Pure functions over plain values and duck-typed vLLM objects, so they are
tested without vLLM or a GPU. Semantics match the hf provider: temperature
unset is greedy (vLLM's own default is 1.0), max_tokens unset is 512 (vLLM's
own default is 16).
"""

from __future__ import annotations

from typing import Any

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import (
    ChatCompletionChoice,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    StopReason,
    TopLogprob,
)

DEFAULT_MAX_TOKENS = 512

HONOURED = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop_seqs",
        "num_choices",
        "best_of",
        "logprobs",
        "top_logprobs",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
    }
)
"""GenerateConfig fields mapped onto SamplingParams."""

_FINISH: dict[str | None, StopReason] = {"stop": "stop", "length": "max_tokens"}


def sampling_kwargs(config: GenerateConfig) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` from a GenerateConfig."""
    n = config.num_choices or 1
    kwargs: dict[str, Any] = {
        "n": n,
        "temperature": config.temperature or 0.0,
        "max_tokens": config.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if config.best_of is not None:
        if config.best_of < n:
            raise ConfigError(
                f"best_of={config.best_of} is less than num_choices={n}; set best_of >= num_choices"
            )
        kwargs["best_of"] = config.best_of
    optional = {
        "top_p": config.top_p,
        "top_k": config.top_k,
        "seed": config.seed,
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
        "logit_bias": dict(config.logit_bias) if config.logit_bias else None,
        "stop": [s for s in config.stop_seqs or () if s] or None,
    }
    kwargs.update({name: value for name, value in optional.items() if value is not None})
    if config.logprobs or config.top_logprobs:
        # vLLM's `logprobs=k` returns the sampled token plus the k most likely ones.
        kwargs["logprobs"] = config.top_logprobs or 0
    return kwargs


def engine_kwargs(model: str, model_args: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(AsyncEngineArgs kwargs, CUDA_VISIBLE_DEVICES value) for `vllm/<model>` and -M args.

    `-M device='0,1'` selects GPUs and sets tensor_parallel_size to their count
    (an explicit `-M tensor_parallel_size=` wins); `-M model_path=` is the model
    for `vllm/local`; every other -M value goes to AsyncEngineArgs as is.
    """
    args = dict(model_args)
    path = args.pop("model_path", None)
    if model == "local":
        if not path:
            raise ConfigError("vllm/local needs the model directory: add -M model_path=DIR")
        model = str(path)
    elif path:
        raise ConfigError(
            f"-M model_path is only for vllm/local; use vllm/local -M model_path={path}"
        )
    devices = None
    device = args.pop("device", None)
    if device is not None:
        text = str(device).replace(" ", "")
        parts = [p for p in text.split(",") if p]
        if not parts or not all(p.isdigit() for p in parts):
            raise ConfigError(
                f"-M device={device} must list GPU indices, e.g. -M device=0 or -M device='0,1,2,3'"
            )
        devices = ",".join(parts)
        args.setdefault("tensor_parallel_size", len(parts))
    if "tensor_parallel_size" in args:
        args["tensor_parallel_size"] = int(args["tensor_parallel_size"])
    return {"model": model, **args}, devices


def to_output(
    result: Any, model: str, top_logprobs: int = 0, token_bytes: Any = None
) -> ModelOutput:
    """A ModelOutput from vLLM's final RequestOutput.

    `top_logprobs` is the k that was requested; `token_bytes(id) -> (text, bytes)`
    gives exact token strings (vLLM's decoded_token text is used without it).
    """
    choices = []
    output_tokens = 0
    for completion in sorted(result.outputs, key=lambda c: c.index):
        output_tokens += len(completion.token_ids)
        logprobs = None
        if completion.logprobs is not None:
            steps = zip(completion.token_ids, completion.logprobs, strict=False)
            logprobs = Logprobs(
                content=[
                    _logprob(token_id, entries, top_logprobs, token_bytes)
                    for token_id, entries in steps
                ]
            )
        message = ChatMessageAssistant(content=completion.text, model=model, source="generate")
        choices.append(
            ChatCompletionChoice(
                message=message,
                stop_reason=_FINISH.get(completion.finish_reason, "unknown"),
                logprobs=logprobs,
            )
        )
    input_tokens = len(result.prompt_token_ids or ())
    usage = ModelUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )
    return ModelOutput(model=model, choices=choices, usage=usage)


def _logprob(token_id: int, entries: dict[int, Any], k: int, token_bytes: Any) -> Logprob:
    """One position: vLLM gives the top k by rank (1 = most likely) plus the sampled token."""

    def describe(tid: int) -> tuple[str, list[int]]:
        if token_bytes is not None:
            text, data = token_bytes(tid)
            return text, list(data)
        text = entries[tid].decoded_token or ""
        return text, list(text.encode())

    ranked = sorted(
        (tid for tid, entry in entries.items() if entry.rank is not None and entry.rank <= k),
        key=lambda tid: entries[tid].rank,
    )
    top = []
    for tid in ranked:
        text, alt_bytes = describe(tid)
        top.append(TopLogprob(token=text, logprob=entries[tid].logprob, bytes=alt_bytes))
    token, data = describe(token_id)
    return Logprob(token=token, logprob=entries[token_id].logprob, bytes=data, top_logprobs=top)
