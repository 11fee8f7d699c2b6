"""An Anthropic Messages API response (or stream events) -> gauge types."""

from __future__ import annotations

from typing import Any

from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import ChatCompletionChoice, ModelOutput, ModelUsage, StopReason
from gauge.model.providers.anthropic.errors import AnthropicResponseError
from gauge.model.tools import ToolCall

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "model_length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def parse_message(body: Any, model: str) -> ModelOutput:
    """The ModelOutput for a non-streaming response body."""
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise AnthropicResponseError("api_error", f"unexpected response body: {str(body)[:200]}")
    content: list[Content] = []
    calls: list[ToolCall] = []
    for block in body["content"]:
        kind = block.get("type")
        if kind == "text":
            content.append(ContentText(text=block.get("text", "")))
        elif kind == "thinking":
            content.append(
                ContentReasoning(
                    reasoning=block.get("thinking", ""), signature=block.get("signature")
                )
            )
        elif kind == "redacted_thinking":
            content.append(ContentReasoning(reasoning=block.get("data", ""), redacted=True))
        elif kind == "tool_use":
            calls.append(
                ToolCall(id=block["id"], function=block["name"], arguments=block.get("input") or {})
            )
    raw_stop = body.get("stop_reason")
    stop_reason = STOP_REASONS.get(raw_stop or "", "unknown")
    name = body.get("model") or model
    message = ChatMessageAssistant(
        content=content, tool_calls=calls or None, model=name, source="generate"
    )
    metadata = {"id": body["id"]} if body.get("id") else None
    if raw_stop == "stop_sequence" and body.get("stop_sequence"):
        metadata = {**(metadata or {}), "stop_sequence": body["stop_sequence"]}
    return ModelOutput(
        model=name,
        choices=[ChatCompletionChoice(message=message, stop_reason=stop_reason)],
        usage=parse_usage(body.get("usage")),
        metadata=metadata,
        error="the model refused to answer" if raw_stop == "refusal" else None,
    )


def parse_usage(usage: Any) -> ModelUsage | None:
    """Token usage; `input_tokens` excludes cached tokens, `total_tokens` counts them."""
    if not isinstance(usage, dict):
        return None
    uncached = int(usage.get("input_tokens") or 0)
    output = int(usage.get("output_tokens") or 0)
    write = usage.get("cache_creation_input_tokens")
    read = usage.get("cache_read_input_tokens")
    return ModelUsage(
        input_tokens=uncached,
        output_tokens=output,
        total_tokens=uncached + output + int(write or 0) + int(read or 0),
        input_tokens_cache_write=write,
        input_tokens_cache_read=read,
    )


def stream_text(event: dict[str, Any]) -> str | None:
    """The text delta carried by one stream event, raising on an `error` event."""
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            return str(delta.get("text", ""))
    elif kind == "error":
        error = event.get("error") or {}
        raise AnthropicResponseError(
            str(error.get("type") or "api_error"), str(error.get("message") or "stream error")
        )
    return None
