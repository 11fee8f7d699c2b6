"""Converse answers -> ModelOutput, and ConverseStream's event-stream frames -> events.

ConverseStream answers in AWS's binary event-stream framing (length-prefixed,
CRC-checked messages with typed headers); botocore's EventStreamBuffer decodes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import ChatCompletionChoice, ModelOutput, ModelUsage, StopReason
from gauge.model.providers.bedrock.errors import BedrockError, from_stream
from gauge.model.tools import ToolCall

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "max_tokens",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "model_context_window_exceeded": "model_length",
}
"""Converse stopReason -> gauge stop reason; anything else maps to unknown."""


def model_output(body: dict[str, Any], model: str) -> ModelOutput:
    """Translate one Converse answer."""
    message = (body.get("output") or {}).get("message") or {}
    content: list[Content] = []
    tool_calls: list[ToolCall] = []
    for block in message.get("content") or ():
        if "text" in block:
            content.append(ContentText(text=block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = use.get("input")
            tool_calls.append(
                ToolCall(
                    id=use.get("toolUseId", ""),
                    function=use.get("name", ""),
                    arguments=arguments if isinstance(arguments, dict) else {},
                    parse_error=None
                    if isinstance(arguments, dict)
                    else f"tool input is not a JSON object: {arguments!r:.200}",
                )
            )
        elif "reasoningContent" in block:
            content.append(reasoning(block["reasoningContent"]))
    stop = body.get("stopReason") or ""
    stop_reason = STOP_REASONS.get(stop, "unknown")
    assistant = ChatMessageAssistant(
        content=content or "", tool_calls=tool_calls or None, model=model, source="generate"
    )
    metadata: dict[str, Any] = {"stop_reason": stop}
    if (latency := (body.get("metrics") or {}).get("latencyMs")) is not None:
        metadata["latency_ms"] = latency
    error = None
    if stop == "guardrail_intervened":
        error = "bedrock guardrail intervened"
    elif stop == "content_filtered":
        error = "bedrock content filter blocked the output"
    return ModelOutput(
        model=model,
        choices=[ChatCompletionChoice(message=assistant, stop_reason=stop_reason)],
        usage=usage(body.get("usage")),
        metadata=metadata,
        error=error,
    )


def reasoning(block: dict[str, Any]) -> ContentReasoning:
    """A reasoningContent block: signed text, or redacted (opaque base64) content."""
    if "redactedContent" in block:
        return ContentReasoning(reasoning=str(block["redactedContent"]), redacted=True)
    text = block.get("reasoningText") or {}
    return ContentReasoning(reasoning=text.get("text", ""), signature=text.get("signature"))


def usage(raw: dict[str, Any] | None) -> ModelUsage | None:
    """Converse usage, cache reads and writes included."""
    if not raw:
        return None
    input_tokens = int(raw.get("inputTokens") or 0)
    output_tokens = int(raw.get("outputTokens") or 0)
    read = raw.get("cacheReadInputTokens")
    write = raw.get("cacheWriteInputTokens")
    return ModelUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=int(raw.get("totalTokens") or input_tokens + output_tokens),
        input_tokens_cache_read=None if read is None else int(read),
        input_tokens_cache_write=None if write is None else int(write),
    )


class EventDecoder:
    """Feed raw ConverseStream bytes; get (event type, payload) pairs back.

    An exception message inside the stream is raised as a BedrockError.
    """

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
        """The complete events `data` finishes (a partial frame waits for more bytes)."""
        from botocore.eventstream import ParserError

        self._buffer.add_data(data)
        try:
            for message in self._buffer:
                headers = message.headers
                kind = headers.get(":message-type", "event")
                if kind == "exception":
                    raise from_stream(str(headers.get(":exception-type", "")), message.payload)
                if kind == "error":
                    raise BedrockError(
                        200,
                        str(headers.get(":error-code", "")),
                        str(headers.get(":error-message", "error event in the stream")),
                    )
                payload = orjson.loads(message.payload) if message.payload else {}
                yield str(headers.get(":event-type", "")), payload
        except (ParserError, orjson.JSONDecodeError) as ex:
            from gauge.model.providers._http import HTTPConnectionError

            raise HTTPConnectionError(f"bedrock sent an unreadable event stream: {ex}") from None


def stream_text(event: str, payload: dict[str, Any]) -> str | None:
    """The answer text one stream event carries (tool and reasoning deltas carry none)."""
    if event != "contentBlockDelta":
        return None
    text = (payload.get("delta") or {}).get("text")
    return text if isinstance(text, str) and text else None
