"""Cohere Chat API v2 responses (whole or streamed) -> ModelOutput."""

from __future__ import annotations

from typing import Any

import orjson

from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import (
    ChatCompletionChoice,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    StopReason,
)
from gauge.model.tools import ToolCall

STOP_REASONS: dict[str, StopReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "max_tokens",
    "TOOL_CALL": "tool_calls",
}
"""v2 finish_reason -> gauge stop reason; ERROR and TIMEOUT map to unknown."""


def model_output(body: dict[str, Any], model: str) -> ModelOutput:
    """Translate one `POST /v2/chat` answer."""
    message = body.get("message") or {}
    content: list[Content] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            content.append(ContentText(text=block.get("text", "")))
        elif kind == "thinking":
            content.append(ContentReasoning(reasoning=block.get("thinking", "")))
    tool_calls = [tool_call(c) for c in message.get("tool_calls") or ()]
    if (
        tool_calls
        and message.get("tool_plan")
        and not any(isinstance(p, ContentText) for p in content)
    ):
        content.append(ContentText(text=message["tool_plan"]))
    finish = body.get("finish_reason") or ""
    assistant = ChatMessageAssistant(
        content=content or "",
        tool_calls=tool_calls or None,
        model=model,
        source="generate",
    )
    choice = ChatCompletionChoice(
        message=assistant,
        stop_reason=STOP_REASONS.get(finish, "unknown"),
        logprobs=logprobs(body.get("logprobs")),
    )
    error = None
    if finish in ("ERROR", "TIMEOUT"):
        error = f"cohere stopped generating with finish_reason {finish}"
    metadata = {"id": body["id"]} if body.get("id") else None
    return ModelOutput(
        model=model,
        choices=[choice],
        usage=usage(body.get("usage")),
        metadata=metadata,
        error=error,
    )


def tool_call(raw: dict[str, Any]) -> ToolCall:
    """A v2 tool call; arguments arrive as a JSON string."""
    function = raw.get("function") or {}
    arguments = function.get("arguments") or "{}"
    parse_error = None
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError as ex:
        parsed, parse_error = {}, f"tool arguments are not JSON ({ex}): {arguments[:200]}"
    if not isinstance(parsed, dict):
        parsed, parse_error = {}, f"tool arguments are not a JSON object: {arguments!s:.200}"
    return ToolCall(
        id=raw.get("id") or "",
        function=function.get("name") or "",
        arguments=parsed,
        parse_error=parse_error,
    )


def usage(raw: dict[str, Any] | None) -> ModelUsage | None:
    """Token counts: `tokens` (what the model saw) when given, else `billed_units`."""
    if not raw:
        return None
    counts = raw.get("tokens") or raw.get("billed_units") or {}
    input_tokens = int(counts.get("input_tokens") or 0)
    output_tokens = int(counts.get("output_tokens") or 0)
    return ModelUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def logprobs(raw: list[dict[str, Any]] | None) -> Logprobs | None:
    """v2 logprobs: one entry per text chunk; a chunk's logprob sums its tokens'."""
    if not raw:
        return None
    return Logprobs(
        content=[
            Logprob(token=item.get("text", ""), logprob=float(sum(item.get("logprobs") or ())))
            for item in raw
        ]
    )


def stream_text(event: dict[str, Any]) -> str | None:
    """The answer text a v2 stream event carries (thinking and tool deltas carry none)."""
    if event.get("type") != "content-delta":
        return None
    content = ((event.get("delta") or {}).get("message") or {}).get("content") or {}
    text = content.get("text")
    return text if isinstance(text, str) and text else None
