"""GenResult -> ModelOutput, built without re-validation.

Every value here is produced by gauge itself with the right type, and this runs
once per request on the event loop, where it is most of the provider's per-request
cost. Objects are assembled with `gauge.model._build.trusted` (no re-validation).
"""

from __future__ import annotations

from collections.abc import Callable

from gauge.model._build import trusted
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

TokenBytesFn = Callable[[int], tuple[str, bytes]]


def build_output(result: GenResult, model: str, token_bytes: TokenBytesFn) -> ModelOutput:
    """The ModelOutput for one request's generated choices and usage."""
    choices = [_choice(choice, model, token_bytes) for choice in result.choices]
    generated = result.output_tokens  # a sum over choices: once, not twice
    usage = trusted(
        ModelUsage,
        {
            "input_tokens": result.input_tokens,
            "output_tokens": generated,
            "total_tokens": result.input_tokens + generated,
            "input_tokens_cache_write": None,
            "input_tokens_cache_read": None,
            "reasoning_tokens": None,
        },
    )
    return trusted(
        ModelOutput,
        {
            "model": model,
            "choices": choices,
            "usage": usage,
            "time": None,
            "metadata": None,
            "error": None,
            "headers": None,
            "call": None,
        },
    )


def _choice(choice: GenChoice, model: str, token_bytes: TokenBytesFn) -> ChatCompletionChoice:
    logprobs = None
    if choice.logprobs is not None:
        logprobs = Logprobs(content=[_logprob(lp, token_bytes) for lp in choice.logprobs])
    message = trusted(
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
    return trusted(
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
