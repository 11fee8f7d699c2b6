"""Messages, tools and GenerateConfig -> an OpenAI chat-completions request body.

Plain dicts all the way: the body is serialised once by orjson in the HTTP
client, so nothing here builds pydantic objects. The common case (text
messages, no tools) costs one pass over the messages.
"""

from __future__ import annotations

import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentAudio, ContentImage, ContentText
from gauge.model.messages import ChatMessage
from gauge.model.tools import ToolChoice, ToolInfo

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]
LogprobsStyle = Literal["bool", "int"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one OpenAI-compatible service spells the parts that differ between services."""

    max_tokens_field: MaxTokensField = "max_tokens"
    logprobs_style: LogprobsStyle = "bool"
    """bool: `logprobs: true` + `top_logprobs: k` (OpenAI); int: `logprobs: k` (Together)."""
    video: bool = False
    """Whether `video_url` content parts are accepted (vLLM)."""
    stream_usage: bool = True
    """Whether to ask for usage in the last streamed chunk (`stream_options`)."""


OPENAI_DIALECT = Dialect()


def chat_body(
    model: str,
    messages: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
    dialect: Dialect = OPENAI_DIALECT,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one `POST /chat/completions`.

    `extra` (the provider's model args) is added before `config.extra_body`,
    which is added last, so an explicit extra_body always wins.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [chat_message(m, dialect) for m in messages],
    }
    if tools:
        body["tools"] = [tool_param(t) for t in tools]
        body["tool_choice"] = tool_choice_param(tool_choice)
        if config.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = config.parallel_tool_calls
    elif tool_choice != "none" and tool_choice != "auto":
        raise ConfigError(
            f"tool_choice={tool_choice!r} needs tools but none were given; pass tools=[...]"
        )
    if config.model_fields_set:
        apply_config(body, config, dialect)
    if extra:
        body.update(extra)
    if config.extra_body:
        body.update(config.extra_body)
    return body


def apply_config(body: dict[str, Any], config: GenerateConfig, dialect: Dialect) -> None:
    """Copy the set sampling fields of `config` onto `body` in wire spelling."""
    c = config
    if c.max_tokens is not None:
        body[dialect.max_tokens_field] = c.max_tokens
    if c.temperature is not None:
        body["temperature"] = c.temperature
    if c.top_p is not None:
        body["top_p"] = c.top_p
    if c.stop_seqs:
        body["stop"] = list(c.stop_seqs)
    if c.seed is not None:
        body["seed"] = c.seed
    if c.frequency_penalty is not None:
        body["frequency_penalty"] = c.frequency_penalty
    if c.presence_penalty is not None:
        body["presence_penalty"] = c.presence_penalty
    if c.logit_bias:
        body["logit_bias"] = {str(token): _number(bias) for token, bias in c.logit_bias.items()}
    if c.num_choices is not None:
        body["n"] = c.num_choices
    if c.logprobs or c.top_logprobs:
        if dialect.logprobs_style == "int":
            body["logprobs"] = c.top_logprobs or 1
        else:
            body["logprobs"] = True
            if c.top_logprobs:
                body["top_logprobs"] = c.top_logprobs
    elif c.logprobs is False:
        body["logprobs"] = False if dialect.logprobs_style == "bool" else 0
    if c.reasoning_effort is not None:
        body["reasoning_effort"] = c.reasoning_effort
    if c.response_schema is not None:
        schema = c.response_schema
        json_schema: dict[str, Any] = {"name": schema.name, "schema": schema.json_schema}
        if schema.description is not None:
            json_schema["description"] = schema.description
        if schema.strict is not None:
            json_schema["strict"] = schema.strict
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    if c.top_k is not None:
        body["top_k"] = c.top_k
    if c.best_of is not None:
        body["best_of"] = c.best_of


def chat_message(message: ChatMessage, dialect: Dialect = OPENAI_DIALECT) -> dict[str, Any]:
    """One message in wire shape."""
    role = message.role
    content = message.content
    if role == "user":
        if isinstance(content, str):
            return {"role": "user", "content": content}
        return {"role": "user", "content": [_user_part(p, dialect) for p in content]}
    if role == "system":
        return {"role": "system", "content": message.text}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = content if isinstance(content, str) else _assistant_text(content)
        calls = getattr(message, "tool_calls", None)
        if calls:
            out["content"] = text or None
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function,
                        "arguments": orjson.dumps(call.arguments).decode(),
                    },
                }
                for call in calls
            ]
        else:
            out["content"] = text
        return out
    # tool result
    error = getattr(message, "error", None)
    text = message.text
    if error is not None:
        text = f"Error: {error.message}" + (f"\n{text}" if text else "")
    return {
        "role": "tool",
        "tool_call_id": getattr(message, "tool_call_id", None) or "",
        "content": text,
    }


def _assistant_text(content: list[Any]) -> str:
    # Reasoning parts are not replayed: the chat-completions format has no field for them.
    return "\n".join(p.text for p in content if isinstance(p, ContentText))


def _user_part(part: Any, dialect: Dialect) -> dict[str, Any]:
    if isinstance(part, ContentText):
        return {"type": "text", "text": part.text}
    if isinstance(part, ContentImage):
        return {
            "type": "image_url",
            "image_url": {"url": _image_url(part.image), "detail": part.detail},
        }
    if isinstance(part, ContentAudio):
        return {
            "type": "input_audio",
            "input_audio": {"data": _base64_data(part.audio, "audio"), "format": part.format},
        }
    kind = getattr(part, "type", type(part).__name__)
    if kind == "video" and dialect.video:
        return {"type": "video_url", "video_url": {"url": _image_url(part.video)}}
    if kind == "reasoning":
        return {"type": "text", "text": part.reasoning}
    raise ConfigError(
        f"this provider does not accept {kind} content in a user message; remove that part"
    )


def _image_url(value: str) -> str:
    """URLs and data URIs pass through; a local file becomes a base64 data URI."""
    if value.startswith(("http://", "https://", "data:")):
        return value
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"media {value[:80]!r} is not a URL, data URI or existing file")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _base64_data(value: str, kind: str) -> str:
    """Raw base64 from a data URI or a local file (OpenAI's input_audio takes no URLs)."""
    if value.startswith("data:"):
        _, _, data = value.partition(",")
        return data
    if value.startswith(("http://", "https://")):
        raise ConfigError(
            f"{kind} input must be a base64 data URI or a local file, not a URL; download it first"
        )
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{kind} {value[:80]!r} is not a data URI or an existing file")
    return base64.b64encode(path.read_bytes()).decode()


def tool_param(tool: ToolInfo) -> dict[str, Any]:
    """A tool definition in wire shape."""
    params = tool.parameters
    function: dict[str, Any] = {
        "name": tool.name,
        "parameters": {
            "type": "object",
            "properties": params.properties,
            "required": params.required,
            "additionalProperties": params.additionalProperties,
        },
    }
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def tool_choice_param(choice: ToolChoice) -> Any:
    """auto | required | none, or a named function."""
    if choice == "any":
        return "required"
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def _number(value: float) -> int | float:
    # Whole biases go out as integers: the OpenAI schema types logit_bias values as integer.
    return int(value) if float(value).is_integer() else value
