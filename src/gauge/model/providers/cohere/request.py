"""Messages, tools and GenerateConfig -> a Cohere Chat API v2 request body.

Cohere v2 takes the system prompt as a `system` role message, tool calls on the
assistant message (`tool_calls` with JSON-string arguments, the accompanying
text as `tool_plan`) and tool results as `tool` role messages. Plain dicts all
the way: orjson serialises the body once.
"""

from __future__ import annotations

from typing import Any

import orjson

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.messages import ChatMessage, ChatMessageAssistant, ChatMessageTool
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo

# GenerateConfig field -> Cohere v2 body field (same value, no conversion).
_SAMPLING = (
    ("max_tokens", "max_tokens"),
    ("temperature", "temperature"),
    ("top_p", "p"),
    ("top_k", "k"),
    ("seed", "seed"),
    ("stop_seqs", "stop_sequences"),
    ("frequency_penalty", "frequency_penalty"),
    ("presence_penalty", "presence_penalty"),
    ("logprobs", "logprobs"),
)


def chat_body(
    model: str,
    messages: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
    stream: bool = False,
) -> dict[str, Any]:
    """The JSON body of one `POST /v2/chat`; `config.extra_body` is added last and wins."""
    body: dict[str, Any] = {"model": model, "messages": [message(m) for m in messages]}
    if stream:
        body["stream"] = True
    if tools:
        add_tools(body, tools, tool_choice)
    elif isinstance(tool_choice, ToolFunction) or tool_choice == "any":
        raise ConfigError("tool_choice asks for a tool call but no tools were given; pass tools=")
    if config.model_fields_set:
        for field, wire in _SAMPLING:
            value = getattr(config, field)
            if value is not None:
                body[wire] = value
        if (schema := config.response_schema) is not None:
            body["response_format"] = {"type": "json_object", "json_schema": schema.json_schema}
        if config.extra_body:
            body.update(config.extra_body)
    return body


def add_tools(body: dict[str, Any], tools: list[ToolInfo], tool_choice: ToolChoice) -> None:
    """Tools and tool_choice in v2 shape.

    v2's tool_choice has only REQUIRED and NONE; a named tool is honoured by
    offering only that tool with REQUIRED, which forces exactly that call.
    """
    if isinstance(tool_choice, ToolFunction):
        chosen = [t for t in tools if t.name == tool_choice.name]
        if not chosen:
            names = ", ".join(t.name for t in tools)
            raise ConfigError(f"tool_choice names {tool_choice.name!r}, not one of: {names}")
        tools = chosen
    body["tools"] = [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters.model_dump(exclude_none=True),
            },
        }
        for t in tools
    ]
    if tool_choice == "none":
        body["tool_choice"] = "NONE"
    elif tool_choice == "any" or isinstance(tool_choice, ToolFunction):
        body["tool_choice"] = "REQUIRED"


def message(m: ChatMessage) -> dict[str, Any]:
    """One gauge message as a v2 message."""
    if isinstance(m, ChatMessageAssistant):
        return assistant_message(m)
    if isinstance(m, ChatMessageTool):
        text = m.error.message if m.error is not None else m.text
        # v2 rejects an empty tool result; say so in words the model can read.
        return {
            "role": "tool",
            "tool_call_id": m.tool_call_id or "",
            "content": [{"type": "text", "text": text or "(no output)"}],
        }
    if isinstance(m.content, str):
        return {"role": m.role, "content": m.content}
    if m.role == "system":
        return {"role": "system", "content": m.text}
    # Reasoning is the model's own; it never belongs in a user turn sent back.
    parts = [part(p) for p in m.content if not isinstance(p, ContentReasoning)]
    return {"role": m.role, "content": parts}


def assistant_message(m: ChatMessageAssistant) -> dict[str, Any]:
    """An assistant turn; with tool calls its text travels as `tool_plan`."""
    text = m.text
    if not m.tool_calls:
        return {"role": "assistant", "content": text}
    result: dict[str, Any] = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.function,
                    "arguments": orjson.dumps(call.arguments).decode(),
                },
            }
            for call in m.tool_calls
        ],
    }
    if text:
        result["tool_plan"] = text
    return result


def part(p: object) -> dict[str, Any]:
    """A user content part: text or image_url (http URL or data URI)."""
    if isinstance(p, ContentText):
        return {"type": "text", "text": p.text}
    if isinstance(p, ContentImage):
        image: dict[str, Any] = {"url": p.image}
        if p.detail != "auto":
            image["detail"] = p.detail
        return {"type": "image_url", "image_url": image}
    raise ConfigError(f"cohere cannot take {type(p).__name__} content; send text or images")
