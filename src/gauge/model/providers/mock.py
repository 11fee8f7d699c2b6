"""mock/<anything>: an offline provider for tests, demos and benchmarks.

Outputs come from, in order of precedence:
  * `outputs=`: a string, a list of strings / ModelOutputs (used in order; an
    error once exhausted), or a callable (sync or async) taking
    `(input, tools, tool_choice, config)` and returning a string or ModelOutput;
  * otherwise an echo of the last user message's text.
Usage counts are deterministic: one token per whitespace-separated word.

Loglikelihood scoring is deterministic too: each continuation character is one
token worth `logprob_per_char=` nats (default -1.0, so "Paris" scores -5.0);
a continuation is greedy when its stripped text occurs in the context; rolling
scores a text as a continuation of "". `score_batch_size=` (default 8) sets the
requests per provider call, and `score_batches` records each call's size.

Fault injection, all seeded by `seed=` (default 0):
  * `latency=` seconds per call, or `[low, high]` for a uniform draw;
  * `error_rate=` probability of an injected `error=` kind per call
    (rate_limit | transient | fatal | hang; default transient);
  * `errors=[kind, ...]`: fail the first calls with these kinds, in order;
  * `retry_after=` seconds carried by injected rate-limit errors.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

from gauge.errors import ConfigError
from gauge.model._build import trusted
from gauge.model.api import FATAL, TRANSIENT, ModelAPI, RetryDecision
from gauge.model.config import PROVIDER_FIELDS, GenerateConfig
from gauge.model.messages import ChatMessage, ChatMessageAssistant
from gauge.model.output import (
    ChatCompletionChoice,
    ModelOutput,
    ModelUsage,
    StopReason,
    StreamInfo,
)
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest, with_usage
from gauge.model.tools import ToolChoice, ToolInfo

ERROR_KINDS = ("rate_limit", "transient", "fatal", "hang")


class MockError(Exception):
    """Base of the mock provider's injected errors."""


class MockRateLimitError(MockError):
    """Injected rate-limit error (HTTP 429 analogue)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MockTransientError(MockError):
    """Injected transient error (HTTP 503 analogue)."""


class MockFatalError(MockError):
    """Injected fatal error (HTTP 400 analogue)."""


class MockAPI(ModelAPI):
    """Deterministic offline model; honours every field it is given."""

    honours = PROVIDER_FIELDS
    model_arg_names: ClassVar[frozenset[str]] = frozenset(
        {
            "outputs",
            "latency",
            "error_rate",
            "error",
            "errors",
            "retry_after",
            "seed",
            "max_connections",
            "logprob_per_char",
            "score_batch_size",
        }
    )
    """The model args it takes (`-M latency=0.1`); any other name is an error."""
    api_key_vars = ()
    base_url_vars = ()
    supports_streaming = True
    supports_loglikelihood = True

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        outputs: str | Sequence[str | ModelOutput] | Callable[..., Any] | None = None,
        latency: float | str | Sequence[float] = 0.0,
        error_rate: float | str = 0.0,
        error: str = "transient",
        errors: Sequence[str] | str = (),
        retry_after: float | str | None = None,
        seed: int | str = 0,
        max_connections: int | str = 64,
        logprob_per_char: float | str = -1.0,
        score_batch_size: int | str = 8,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self._logprob_per_char = float(logprob_per_char)
        self._score_batch_size = int(score_batch_size)
        if self._score_batch_size < 1:
            raise ConfigError(f"mock score_batch_size must be at least 1, got {score_batch_size}")
        self.score_batches: list[int] = []
        """Size of each loglikelihood call received, failed ones included."""
        if isinstance(outputs, str):
            outputs = [outputs]
        self._outputs = outputs
        self._next_output = 0
        self._latency = _latency(latency)
        self._error_rate = float(error_rate)
        if not 0 <= self._error_rate <= 1:
            raise ConfigError(f"mock error_rate must be within 0..1, got {error_rate}")
        self._error_kind = _kind(error)
        self._scripted = [_kind(k) for k in ([errors] if isinstance(errors, str) else errors)]
        self._retry_after = None if retry_after is None else float(retry_after)
        self._rng = random.Random(int(seed))
        self._max_connections = int(max_connections)
        self.calls = 0
        """Calls received, failed ones included."""

    def max_connections(self) -> int:
        return self._max_connections

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        self.calls += 1
        await self._delay_and_faults()
        output = await self._produce(input, tools, tool_choice, config)
        if output.usage is None:
            words_in = sum(len(m.text.split()) for m in input)
            words_out = sum(len(c.message.text.split()) for c in output.choices)
            output.usage = trusted(
                ModelUsage,
                {
                    "input_tokens": words_in,
                    "output_tokens": words_out,
                    "total_tokens": words_in + words_out,
                    "input_tokens_cache_write": None,
                    "input_tokens_cache_read": None,
                    "reasoning_tokens": None,
                },
            )
        return output

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        output = await self.generate(input, tools, tool_choice, config)
        for i, word in enumerate(output.completion.split(" ")):
            await asyncio.sleep(0)
            yield word if i == 0 else " " + word
        yield StreamInfo(usage=output.usage, stop_reason=output.stop_reason)

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        self.calls += 1
        self.score_batches.append(len(requests))
        await self._delay_and_faults()
        results = [self._score(r.context, r.continuation) for r in requests]
        words = sum(len((r.context + r.continuation).split()) for r in requests)
        return with_usage(results, ModelUsage(input_tokens=words, total_tokens=words))

    async def loglikelihood_rolling(
        self, texts: list[str], config: GenerateConfig
    ) -> list[Loglikelihood]:
        return await self.loglikelihood([LoglikelihoodRequest("", t) for t in texts], config)

    def score_batch_size(self) -> int:
        return self._score_batch_size

    def _score(self, context: str, continuation: str) -> Loglikelihood:
        answer = continuation.strip()
        greedy = bool(answer) and answer in context
        return Loglikelihood(self._logprob_per_char * len(continuation), greedy, len(continuation))

    def classify_error(self, ex: BaseException) -> RetryDecision:
        if isinstance(ex, MockRateLimitError):
            return RetryDecision("rate_limit", ex.retry_after)
        if isinstance(ex, MockTransientError):
            return TRANSIENT
        if isinstance(ex, MockFatalError):
            return FATAL
        return super().classify_error(ex)

    async def _delay_and_faults(self) -> None:
        kind = None
        if self._scripted:
            kind = self._scripted.pop(0)
        elif self._error_rate and self._rng.random() < self._error_rate:
            kind = self._error_kind
        low, high = self._latency
        if high > 0:
            await asyncio.sleep(low if low == high else self._rng.uniform(low, high))
        if kind == "hang":
            await asyncio.Event().wait()  # until the pipeline's deadline cancels us
        elif kind == "rate_limit":
            raise MockRateLimitError("mock rate limit (injected)", self._retry_after)
        elif kind == "transient":
            raise MockTransientError("mock transient error (injected)")
        elif kind == "fatal":
            raise MockFatalError("mock fatal error (injected)")

    async def _produce(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        source = self._outputs
        if source is None:
            text = next((m.text for m in reversed(input) if m.role == "user"), "")
            return self._text_output(text, config)
        if callable(source):
            result = source(input, tools, tool_choice, config)
            if inspect.isawaitable(result):
                result = await result
        else:
            if self._next_output >= len(source):
                raise MockFatalError(
                    f"mock outputs exhausted after {len(source)} call(s); give more outputs"
                )
            result = source[self._next_output]
            self._next_output += 1
        if isinstance(result, ModelOutput):
            return result.model_copy(deep=True)
        if isinstance(result, str):
            return self._text_output(result, config)
        raise MockFatalError(f"mock output must be a str or ModelOutput, got {type(result)}")

    def _text_output(self, text: str, config: GenerateConfig) -> ModelOutput:
        stop_reason: StopReason = "stop"
        for stop in config.stop_seqs or ():
            if stop and stop in text:
                text = text[: text.index(stop)]
        if config.max_tokens is not None:
            words = text.split(" ")
            if len(words) > config.max_tokens:
                text = " ".join(words[: config.max_tokens])
                stop_reason = "max_tokens"
        model = f"mock/{self.model_name}"
        choices = [
            trusted(
                ChatCompletionChoice,
                {
                    "message": trusted(
                        ChatMessageAssistant,
                        {
                            "content": text,
                            "id": None,
                            "source": "generate",
                            "metadata": None,
                            "role": "assistant",
                            "tool_calls": None,
                            "model": model,
                        },
                    ),
                    "stop_reason": stop_reason,
                    "logprobs": None,
                },
            )
            for _ in range(config.num_choices or 1)
        ]
        return trusted(
            ModelOutput,
            {
                "model": model,
                "choices": choices,
                "usage": None,
                "time": None,
                "metadata": None,
                "error": None,
                "headers": None,
                "call": None,
            },
        )


def _latency(value: float | str | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, str):
        parts = [float(p) for p in value.replace(",", " ").split()]
    elif isinstance(value, int | float):
        parts = [float(value)]
    else:
        parts = [float(p) for p in value]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] < 0 or parts[1] < parts[0]:
        raise ConfigError(f"mock latency must be seconds or [low, high], got {value!r}")
    return parts[0], parts[1]


def _kind(kind: str) -> str:
    if kind not in ERROR_KINDS:
        raise ConfigError(f"mock error kind {kind!r} is not one of {', '.join(ERROR_KINDS)}")
    return kind
