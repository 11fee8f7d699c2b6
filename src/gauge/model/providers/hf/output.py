"""GenResult -> ModelOutput, built without re-validation.

Every value here is produced by gauge itself with the right type, and this runs
once per request on the event loop, where it is most of the provider's per-request
cost. pydantic's `model_construct` spends ~3 µs per object looking up defaults
field by field; `_trusted` sets the same four attributes it sets, directly, when
the values cover every field, and falls back to `model_construct` otherwise (so a
field added to a model later is filled with its default, not lost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import (
    ChatCompletionChoice,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    TopLogprob,
)
from gauge.model.providers.hf.generation import GenChoice, GenResult, TokenLogprob

M = TypeVar("M", bound=BaseModel)
TokenBytesFn = Callable[[int], tuple[str, bytes]]

_set = object.__setattr__
_fields: dict[type[BaseModel], frozenset[str]] = {}


def _trusted(cls: type[M], values: dict[str, Any]) -> M:
    names = _fields.get(cls)
    if names is None:
        names = _fields[cls] = frozenset(cls.model_fields)
    if values.keys() != names:
        return cls.model_construct(**values)
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def build_output(result: GenResult, model: str, token_bytes: TokenBytesFn) -> ModelOutput:
    """The ModelOutput for one request's generated choices and usage."""
    choices = [_choice(choice, model, token_bytes) for choice in result.choices]
    usage = _trusted(
        ModelUsage,
        {
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "total_tokens": result.input_tokens + result.output_tokens,
            "input_tokens_cache_write": None,
            "input_tokens_cache_read": None,
            "reasoning_tokens": None,
        },
    )
    return _trusted(
        ModelOutput,
        {
            "model": model,
            "choices": choices,
            "usage": usage,
            "time": None,
            "metadata": None,
            "error": None,
        },
    )


def _choice(choice: GenChoice, model: str, token_bytes: TokenBytesFn) -> ChatCompletionChoice:
    logprobs = None
    if choice.logprobs is not None:
        logprobs = Logprobs(content=[_logprob(lp, token_bytes) for lp in choice.logprobs])
    message = _trusted(
        ChatMessageAssistant,
        {
            "content": choice.text,
            "id": None,
            "source": "generate",
            "metadata": None,
            "role": "assistant",
            "tool_calls": None,
            "model": model,
        },
    )
    return _trusted(
        ChatCompletionChoice,
        {"message": message, "stop_reason": choice.stop_reason, "logprobs": logprobs},
    )


def _logprob(lp: TokenLogprob, token_bytes: TokenBytesFn) -> Logprob:
    token, data = token_bytes(lp.token_id)
    top = []
    for token_id, value in lp.top:
        alt, alt_bytes = token_bytes(token_id)
        top.append(TopLogprob(token=alt, logprob=value, bytes=list(alt_bytes)))
    return Logprob(token=token, logprob=lp.logprob, bytes=list(data), top_logprobs=top)
