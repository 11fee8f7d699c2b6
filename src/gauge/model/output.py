"""Model output: choices, stop reasons, token usage and logprobs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainSerializer

from gauge.model._build import trusted
from gauge.model.content import Content, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.tools import ToolCall

StopReason = Literal[
    "stop", "max_tokens", "model_length", "tool_calls", "content_filter", "unknown"
]
"""Why generation stopped, normalised across providers."""


USD = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
"""An exact amount of US dollars; a JSON number (a float's shortest form keeps its digits)."""


class ModelUsage(BaseModel):
    """Token usage of one or more calls; `a + b` adds field by field."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_cache_write: int | None = None
    input_tokens_cache_read: int | None = None
    reasoning_tokens: int | None = None
    cost: USD | None = None
    """USD spent (gauge.model.cost); None is unknown, never 0. A sum is unknown when
    any part that had tokens is: a total never leaves out what it could not price.
    JSON holds it as a number with the Decimal's digits (they read back exactly)."""

    def __add__(self, other: ModelUsage) -> ModelUsage:
        def opt(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        # Sums of validated ints: built without re-validation (twice per sample in an
        # eval: 1.9 -> 1.3 us an addition).
        return trusted(
            ModelUsage,
            {
                "input_tokens": self.input_tokens + other.input_tokens,
                "output_tokens": self.output_tokens + other.output_tokens,
                "total_tokens": self.total_tokens + other.total_tokens,
                "input_tokens_cache_write": opt(
                    self.input_tokens_cache_write, other.input_tokens_cache_write
                ),
                "input_tokens_cache_read": opt(
                    self.input_tokens_cache_read, other.input_tokens_cache_read
                ),
                "reasoning_tokens": opt(self.reasoning_tokens, other.reasoning_tokens),
                "cost": _add_cost(self, other),
            },
        )

    @property
    def empty(self) -> bool:
        """No tokens at all (the start of a sum)."""
        return not (self.total_tokens or self.input_tokens or self.output_tokens)


def _add_cost(a: ModelUsage, b: ModelUsage) -> Decimal | None:
    if a.cost is not None and b.cost is not None:
        return a.cost + b.cost
    # An unknown part with tokens makes the sum unknown; an empty one adds nothing.
    if (a.cost is None and not a.empty) or (b.cost is None and not b.empty):
        return None
    return a.cost if a.cost is not None else b.cost


class TopLogprob(BaseModel):
    """One of the most likely tokens at a position."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(BaseModel):
    """Log probability of one generated token, with the top alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None


class Logprobs(BaseModel):
    """Per-token log probabilities of a choice."""

    content: list[Logprob]


class ChatCompletionChoice(BaseModel):
    """One generated alternative."""

    message: ChatMessageAssistant
    stop_reason: StopReason = "unknown"
    logprobs: Logprobs | None = None


class ModelOutput(BaseModel):
    """What a model returned for one request."""

    model: str = ""
    choices: list[ChatCompletionChoice] = Field(default_factory=list)
    usage: ModelUsage | None = None
    time: float | None = None
    """Seconds the successful attempt took."""
    metadata: dict[str, Any] | None = None
    error: str | None = None
    """Set when the model could not produce an output (e.g. refused by a filter)."""
    headers: Any = Field(default=None, exclude=True, repr=False)
    """The response headers of the successful attempt, where the provider has them
    (never serialised: not cached, not logged). Rate control learns limits from them."""
    call: Any = Field(default=None, exclude=True, repr=False)
    """The provider's raw request and response (a gauge.model.call.ModelCall) when its
    `generate` returned `(output, ModelCall)`; never serialised, like `headers`."""

    @property
    def message(self) -> ChatMessageAssistant:
        """The first choice's message (an empty assistant message when there is none)."""
        if not self.choices:
            return ChatMessageAssistant(content="", model=self.model or None)
        return self.choices[0].message

    @property
    def completion(self) -> str:
        """The first choice's text."""
        return self.choices[0].message.text if self.choices else ""

    @completion.setter
    def completion(self, value: str) -> None:
        if self.choices:
            self.choices[0].message.text = value
        else:
            self.choices = [
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content=value, model=self.model or None),
                    stop_reason="stop",
                )
            ]

    @property
    def stop_reason(self) -> StopReason:
        """The first choice's stop reason."""
        return self.choices[0].stop_reason if self.choices else "unknown"

    @classmethod
    def from_content(
        cls,
        model: str,
        content: str | list[Content],
        stop_reason: StopReason = "stop",
        error: str | None = None,
    ) -> ModelOutput:
        """An output with one choice holding `content`."""
        message = ChatMessageAssistant(content=content, model=model, source="generate")
        return cls(
            model=model,
            choices=[ChatCompletionChoice(message=message, stop_reason=stop_reason)],
            error=error,
        )

    @classmethod
    def for_tool_call(
        cls,
        model: str,
        tool_name: str,
        tool_arguments: dict[str, Any],
        tool_call_id: str | None = None,
        content: str | None = None,
    ) -> ModelOutput:
        """An output whose one choice calls `tool_name` with `tool_arguments`.

        The id defaults to a new random one (`call_<32 hex>`), so two calls never
        share an id; the text defaults to "tool call for tool <tool_name>" (as Inspect AI).
        """
        if content is None:
            content = f"tool call for tool {tool_name}"
        call = ToolCall(
            id=tool_call_id or f"call_{uuid.uuid4().hex}",
            function=tool_name,
            arguments=tool_arguments,
        )
        message = ChatMessageAssistant(
            content=[ContentText(text=content)] if content else "",
            tool_calls=[call],
            model=model,
            source="generate",
        )
        return cls(
            model=model,
            choices=[ChatCompletionChoice(message=message, stop_reason="tool_calls")],
        )


@dataclass(slots=True)
class StreamInfo:
    """What a provider's stream may yield besides text deltas (see ModelAPI.stream).

    Yield one before the first delta with the response headers, and one at the end
    with the usage and stop reason: the pipeline charges the usage to the key's
    token budget and accounts it like a generate call's.
    """

    headers: Mapping[str, str] | None = None
    usage: ModelUsage | None = None
    stop_reason: StopReason | None = None
