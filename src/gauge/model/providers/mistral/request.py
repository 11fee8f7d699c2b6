"""gauge messages, tools and config -> a Mistral chat completions request body.

Mistral's chat format is OpenAI-like, with its own names: `random_seed`,
`tool_choice: "any"`, and tool-call ids that must be 9 alphanumeric characters
(ids from other providers are mapped onto such ids, the same way on the call
and on its result, so a conversation can move between providers).
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Any

import orjson

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.messages import ChatMessage, ChatMessageAssistant, ChatMessageTool
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo

_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("max_tokens", "max_tokens"),
    ("seed", "random_seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
    ("num_choices", "n"),
    ("parallel_tool_calls", "parallel_tool_calls"),
)
_ID = re.compile(r"[a-zA-Z0-9]{9}")
_ALPHABET = string.ascii_letters + string.digits


def build_body(
    model: str,
    input: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
    safe_prompt: bool | None = None,
) -> dict[str, Any]:
    """The JSON body for POST <base>/chat/completions."""
    body: dict[str, Any] = {"model": model, "messages": convert_messages(input)}
    for field, wire in _FIELDS:
        value = getattr(config, field)
        if value is not None:
            body[wire] = value
    if config.stop_seqs:
        body["stop"] = config.stop_seqs
    if tools:
        body["tools"] = [tool_param(tool) for tool in tools]
        body["tool_choice"] = tool_choice_param(tool_choice)
    if config.response_schema is not None:
        schema = config.response_schema
        json_schema: dict[str, Any] = {"name": schema.name, "schema": schema.json_schema}
        if schema.description:
            json_schema["description"] = schema.description
        if schema.strict is not None:
            json_schema["strict"] = schema.strict
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    if safe_prompt is not None:
        body["safe_prompt"] = safe_prompt
    if config.extra_body:
        body.update(config.extra_body)
    return body


def convert_messages(input: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages in Mistral's shape."""
    messages: list[dict[str, Any]] = []
    for message in input:
        if isinstance(message, ChatMessageAssistant):
            messages.append(assistant_message(message))
        elif isinstance(message, ChatMessageTool):
            if not message.tool_call_id:
                raise ConfigError("mistral tool messages need tool_call_id (the call they answer)")
            result: dict[str, Any] = {
                "role": "tool",
                "content": message.error.message if message.error else message.text,
                "tool_call_id": tool_call_id(message.tool_call_id),
            }
            if message.function:
                result["name"] = message.function
            messages.append(result)
        elif message.role == "system":
            messages.append({"role": "system", "content": message.text})
        else:
            messages.append({"role": "user", "content": user_content(message.content)})
    return messages


def user_content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    """A string, or text and image_url chunks."""
    if isinstance(content, str):
        return content
    if all(isinstance(part, ContentText) for part in content):
        return "\n".join(part.text for part in content)
    chunks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ContentText):
            chunks.append({"type": "text", "text": part.text})
        elif isinstance(part, ContentImage):
            if not part.image.startswith(("http://", "https://", "data:")):
                raise ConfigError(
                    f"mistral images must be an http(s) URL or a data URI, got {part.image[:40]!r}"
                )
            chunks.append({"type": "image_url", "image_url": part.image})
        elif not isinstance(part, ContentReasoning):
            raise ConfigError(
                f"mistral chat does not accept {part.type} content; send text or images"
            )
    return chunks


def assistant_message(message: ChatMessageAssistant) -> dict[str, Any]:
    """An assistant message; reasoning is not replayed (Mistral has no signed thinking)."""
    result: dict[str, Any] = {"role": "assistant", "content": message.text}
    if message.tool_calls:
        result["tool_calls"] = [
            {
                "id": tool_call_id(call.id),
                "type": "function",
                "function": {
                    "name": call.function,
                    "arguments": orjson.dumps(call.arguments).decode(),
                },
            }
            for call in message.tool_calls
        ]
    return result


def tool_call_id(value: str) -> str:
    """`value` when it is a valid Mistral id, else a stable 9-character id derived from it."""
    if _ID.fullmatch(value):
        return value
    number = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def tool_param(tool: ToolInfo) -> dict[str, Any]:
    """A function tool definition."""
    params = tool.parameters
    schema: dict[str, Any] = {"type": "object", "properties": params.properties}
    if params.required:
        schema["required"] = params.required
    function: dict[str, Any] = {"name": tool.name, "parameters": schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def tool_choice_param(choice: ToolChoice) -> str | dict[str, Any]:
    """auto / any / none, or a named function."""
    if isinstance(choice, ToolFunction):
        return {"type": "function", "function": {"name": choice.name}}
    return choice
