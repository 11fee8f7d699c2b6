"""A Mistral chat completion (or stream chunk) -> gauge types."""

from __future__ import annotations

from typing import Any

import orjson

from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import ChatCompletionChoice, ModelOutput, ModelUsage, StopReason
from gauge.model.providers.mistral.errors import MistralResponseError
from gauge.model.tools import ToolCall

STOP_REASONS: dict[str, StopReason] = {
    "stop": "stop",
    "length": "max_tokens",
    "model_length": "model_length",
    "tool_calls": "tool_calls",
}


def parse_completion(body: Any, model: str) -> ModelOutput:
    """The ModelOutput for a non-streaming response body."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise MistralResponseError(f"unexpected response body: {str(body)[:200]}")
    name = body.get("model") or model
    choices = [parse_choice(choice, name) for choice in body["choices"]]
    errored = [c for c in body["choices"] if c.get("finish_reason") == "error"]
    usage = body.get("usage")
    return ModelOutput(
        model=name,
        choices=choices,
        usage=ModelUsage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
        )
        if isinstance(usage, dict)
        else None,
        metadata={"id": body["id"]} if body.get("id") else None,
        error="the model stopped with finish_reason=error" if errored else None,
    )


def parse_choice(choice: dict[str, Any], model: str) -> ChatCompletionChoice:
    """One choice: text (and thinking chunks) plus tool calls."""
    message = choice.get("message") or {}
    calls = [parse_tool_call(call) for call in message.get("tool_calls") or ()]
    return ChatCompletionChoice(
        message=ChatMessageAssistant(
            content=parse_content(message.get("content")),
            tool_calls=calls or None,
            model=model,
            source="generate",
        ),
        stop_reason=STOP_REASONS.get(choice.get("finish_reason") or "", "unknown"),
    )


def parse_content(content: Any) -> str | list[Content]:
    """A string, or text and thinking chunks (Magistral) as content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[Content] = []
    for chunk in content:
        kind = chunk.get("type")
        if kind == "text":
            parts.append(ContentText(text=chunk.get("text", "")))
        elif kind == "thinking":
            text = "".join(c.get("text", "") for c in chunk.get("thinking") or ())
            parts.append(ContentReasoning(reasoning=text))
    return parts


def parse_tool_call(call: dict[str, Any]) -> ToolCall:
    """A tool call; arguments arrive as a JSON string (or, sometimes, an object)."""
    function = call.get("function") or {}
    raw = function.get("arguments")
    arguments: dict[str, Any] = {}
    error = None
    if isinstance(raw, dict):
        arguments = raw
    elif isinstance(raw, str) and raw.strip():
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as ex:
            error = f"arguments are not valid JSON: {ex}"
        else:
            if isinstance(parsed, dict):
                arguments = parsed
            else:
                error = f"arguments are not a JSON object: {raw[:100]}"
    return ToolCall(
        id=call.get("id") or "", function=function.get("name", ""), arguments=arguments,
        parse_error=error,
    )  # fmt: skip


def stream_text(chunk: Any) -> str:
    """The answer text in one stream chunk (thinking left out)."""
    if not isinstance(chunk, dict):
        raise MistralResponseError(f"unexpected stream chunk: {str(chunk)[:200]}")
    if "choices" not in chunk and ("message" in chunk or "object" in chunk):
        raise MistralResponseError(f"error in stream: {chunk.get('message', chunk)}")
    choices = chunk.get("choices") or ()
    if not choices:
        return ""
    content = (choices[0].get("delta") or {}).get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if c.get("type") == "text")
    return ""
