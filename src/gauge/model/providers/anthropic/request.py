"""gauge messages, tools and config -> an Anthropic Messages API request body.

System messages are lifted into `system`; tool messages become `tool_result`
blocks in a user turn (consecutive turns of one role are merged, since the API
wants one user turn holding every result of the previous assistant turn).
Reasoning parts are replayed as `thinking` / `redacted_thinking` blocks when
they carry a signature (the API rejects unsigned thinking).
"""

from __future__ import annotations

from typing import Any

from gauge.errors import ConfigError, UnsupportedConfig
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.messages import ChatMessage, ChatMessageAssistant, ChatMessageTool
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo

THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}
"""reasoning_effort -> extended-thinking budget_tokens (LiteLLM's mapping; 1024 is the minimum)."""

_CACHE = {"type": "ephemeral"}


def build_body(
    model: str,
    input: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
    default_max_tokens: int,
) -> dict[str, Any]:
    """The JSON body for POST /v1/messages."""
    system, messages = convert_messages(input)
    max_tokens = config.max_tokens or default_max_tokens
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    if config.reasoning_effort is not None:
        if config.temperature is not None or config.top_k is not None:
            raise UnsupportedConfig(
                "anthropic extended thinking (reasoning_effort) does not allow temperature "
                "or top_k; remove them or remove reasoning_effort"
            )
        if tools and (isinstance(tool_choice, ToolFunction) or tool_choice == "any"):
            raise UnsupportedConfig(
                "anthropic extended thinking (reasoning_effort) only allows tool_choice "
                "auto or none; change tool_choice or remove reasoning_effort"
            )
        budget = THINKING_BUDGETS[config.reasoning_effort]
        # Thinking counts inside max_tokens and the API wants budget < max_tokens:
        # a max_tokens too small for the budget gets the budget added on top.
        if max_tokens <= budget:
            body["max_tokens"] = max_tokens + budget
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if config.temperature is not None:
        body["temperature"] = config.temperature
    if config.top_p is not None:
        body["top_p"] = config.top_p
    if config.top_k is not None:
        body["top_k"] = config.top_k
    if config.stop_seqs:
        body["stop_sequences"] = config.stop_seqs
    if tools:
        body["tools"] = [tool_param(tool) for tool in tools]
        body["tool_choice"] = tool_choice_param(tool_choice, config.parallel_tool_calls)
    if config.cache_prompt:
        add_cache_breakpoints(body)
    if config.extra_body:
        body.update(config.extra_body)
    return body


def convert_messages(
    input: list[ChatMessage],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages) in Anthropic's shape."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in input:
        if message.role == "system":
            if text := message.text:
                system.append({"type": "text", "text": text})
            continue
        if isinstance(message, ChatMessageTool):
            role, blocks = "user", [tool_result_block(message)]
        elif isinstance(message, ChatMessageAssistant):
            role, blocks = "assistant", assistant_blocks(message)
        else:
            role, blocks = "user", content_blocks(message.content)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return system, messages


def content_blocks(content: str | list[Any]) -> list[dict[str, Any]]:
    """Text and image blocks for user content (empty text is dropped: the API rejects it)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ContentText):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ContentImage):
            blocks.append(image_block(part.image))
        elif isinstance(part, ContentReasoning):
            continue
        else:
            raise ConfigError(
                f"anthropic does not accept {part.type} content; send text or images only"
            )
    return blocks


def image_block(image: str) -> dict[str, Any]:
    """An image block from an http(s) URL or a base64 data URI."""
    if image.startswith("data:"):
        media_type, data = parse_data_uri(image)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if image.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": image}}
    raise ConfigError(
        f"anthropic images must be an http(s) URL or a base64 data URI, got {image[:40]!r}"
    )


def parse_data_uri(uri: str) -> tuple[str, str]:
    """(media type, base64 payload) of a `data:<type>;base64,<data>` URI."""
    header, sep, data = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ConfigError(f"expected a base64 data URI (data:<type>;base64,...), got {uri[:40]!r}")
    return header[5:-7] or "application/octet-stream", data


def assistant_blocks(message: ChatMessageAssistant) -> list[dict[str, Any]]:
    """Thinking, text and tool_use blocks, in the order the API produced them."""
    blocks: list[dict[str, Any]] = []
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for part in content:
            if isinstance(part, ContentReasoning):
                if part.redacted:
                    # Opaque data from another provider (e.g. a bare Gemini signature) is empty.
                    if part.reasoning:
                        blocks.append({"type": "redacted_thinking", "data": part.reasoning})
                elif part.signature:
                    blocks.append(
                        {
                            "type": "thinking",
                            "thinking": part.reasoning,
                            "signature": part.signature,
                        }
                    )
            elif isinstance(part, ContentText):
                if part.text:
                    blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, ContentImage):
                blocks.append(image_block(part.image))
    for call in message.tool_calls or ():
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function, "input": call.arguments}
        )
    return blocks


def tool_result_block(message: ChatMessageTool) -> dict[str, Any]:
    """A tool_result block answering `message.tool_call_id`."""
    if not message.tool_call_id:
        raise ConfigError("anthropic tool messages need tool_call_id (the tool_use id they answer)")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.error is not None:
        block["content"] = message.error.message
        block["is_error"] = True
    else:
        block["content"] = content_blocks(message.content) or [{"type": "text", "text": "(empty)"}]
    return block


def tool_param(tool: ToolInfo) -> dict[str, Any]:
    """A tool definition."""
    params = tool.parameters
    schema: dict[str, Any] = {"type": "object", "properties": params.properties}
    if params.required:
        schema["required"] = params.required
    if not params.additionalProperties:
        schema["additionalProperties"] = False
    result: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description:
        result["description"] = tool.description
    return result


def tool_choice_param(choice: ToolChoice, parallel: bool | None) -> dict[str, Any]:
    """auto / any / none / a named tool, with parallel calls switched off when asked."""
    if isinstance(choice, ToolFunction):
        result: dict[str, Any] = {"type": "tool", "name": choice.name}
    else:
        result = {"type": choice}
    if parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def add_cache_breakpoints(body: dict[str, Any]) -> None:
    """Mark the end of the system prompt, the tools and the last user turn as cacheable."""
    if body.get("system"):
        body["system"][-1] = {**body["system"][-1], "cache_control": _CACHE}
    if body.get("tools"):
        body["tools"][-1] = {**body["tools"][-1], "cache_control": _CACHE}
    for message in reversed(body["messages"]):
        if message["role"] == "user" and message["content"]:
            message["content"][-1] = {**message["content"][-1], "cache_control": _CACHE}
            break
