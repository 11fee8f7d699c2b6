"""Turn a caller's input into the message list a provider receives.

Each step runs only when it has work to do, so the common case (a short
conversation of plain text) costs one scan.
"""

from __future__ import annotations

from gauge.errors import ConfigError
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.config_values import tool_output_limit
from gauge.model.content import Content, ContentImage, ContentReasoning, ContentText
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageBase,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.tools import ToolChoice, ToolInfo


def as_messages(input: str | list[ChatMessage]) -> list[ChatMessage]:
    """A new list of messages (a string becomes one user message)."""
    if isinstance(input, str):
        return [ChatMessageUser(content=input)]
    messages = list(input) if isinstance(input, list | tuple) else None
    if messages is None:
        raise ConfigError(
            f"input must be a string or a list of chat messages, got {type(input).__name__}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, ChatMessageBase):
            raise ConfigError(
                f"input message {i} is a {type(message).__name__}, not a chat message: "
                "use ChatMessageUser(content=...) and friends"
            )
    return messages


def prepare_messages(
    messages: list[ChatMessage], api: ModelAPI, config: GenerateConfig
) -> list[ChatMessage]:
    """Apply system_message, tool-output limits, reasoning history, tool-image moves
    and collapsing."""
    if config.system_message:
        messages = insert_system_message(messages, config.system_message)
    if (limit := tool_output_limit(config.max_tool_output)) is not None:
        messages = truncate_tool_output(messages, limit)
    has_reasoning = has_tool_images = False
    for message in messages:
        if isinstance(message.content, list):
            if message.role == "assistant" and any(
                isinstance(p, ContentReasoning) for p in message.content
            ):
                has_reasoning = True
            elif message.role == "tool" and any(
                isinstance(p, ContentImage) for p in message.content
            ):
                has_tool_images = True
    if has_reasoning:
        messages = filter_reasoning(messages, resolve_reasoning_history(api, config))
    if has_tool_images and not api.tool_result_images:
        messages = move_tool_images(messages)
    if api.collapse_user_messages:
        messages = collapse(messages, "user")
    if api.collapse_assistant_messages:
        messages = collapse(messages, "assistant")
    return messages


def insert_system_message(messages: list[ChatMessage], text: str) -> list[ChatMessage]:
    """Insert a system message after any leading system messages."""
    index = 0
    while index < len(messages) and messages[index].role == "system":
        index += 1
    return [*messages[:index], ChatMessageSystem(content=text), *messages[index:]]


def truncate_tool_output(messages: list[ChatMessage], limit: int) -> list[ChatMessage]:
    """Cut the text of each tool message to `limit` UTF-8 bytes, saying so at the end."""
    result: list[ChatMessage] = []
    for message in messages:
        if isinstance(message, ChatMessageTool):
            content = message.content
            if isinstance(content, str):
                text = _truncate(content, limit, limit)
                if text is not None:
                    message = message.model_copy(update={"content": text})
            else:
                budget, changed = limit, False
                parts: list[Content] = []
                for part in content:
                    if isinstance(part, ContentText):
                        if changed:
                            continue  # the budget is spent: later text parts are dropped
                        text = _truncate(part.text, budget, limit)
                        if text is not None:
                            part, changed = ContentText(text=text), True
                        budget = max(0, budget - len(part.text.encode()))
                    parts.append(part)
                if changed:
                    message = message.model_copy(update={"content": parts})
        result.append(message)
    return result


def _truncate(text: str, budget: int, limit: int) -> str | None:
    """`text` cut to `budget` bytes with a note, or None when it fits."""
    data = text.encode()
    if len(data) <= budget:
        return None
    # errors="ignore" drops a multi-byte character cut in half
    return data[:budget].decode(errors="ignore") + f"\n[tool output truncated to {limit} bytes]"


def resolve_reasoning_history(api: ModelAPI, config: GenerateConfig) -> str:
    """none | all | last, from the config and what the provider can replay."""
    choice = config.reasoning_history or "auto"
    if choice == "auto":
        return "all" if api.has_reasoning_history else "none"
    return choice


def filter_reasoning(messages: list[ChatMessage], keep: str) -> list[ChatMessage]:
    """Drop reasoning parts from assistant messages (all, or all but the last)."""
    if keep == "all":
        return messages
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    result: list[ChatMessage] = []
    for i, message in enumerate(messages):
        if (
            message.role == "assistant"
            and isinstance(message.content, list)
            and not (keep == "last" and i == last)
        ):
            parts = [p for p in message.content if not isinstance(p, ContentReasoning)]
            message = message.model_copy(update={"content": parts})
        result.append(message)
    return result


def move_tool_images(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Move images out of tool messages into a user message that follows them."""
    result: list[ChatMessage] = []
    for message in messages:
        if isinstance(message, ChatMessageTool) and isinstance(message.content, list):
            images = [p for p in message.content if isinstance(p, ContentImage)]
            if images:
                others: list[Content] = [
                    p for p in message.content if not isinstance(p, ContentImage)
                ]
                others.append(ContentText(text="(the tool's image is attached below)"))
                result.append(message.model_copy(update={"content": others}))
                result.append(
                    ChatMessageUser(
                        content=list(images),
                        tool_call_id=[message.tool_call_id] if message.tool_call_id else None,
                    )
                )
                continue
        result.append(message)
    return result


def collapse(messages: list[ChatMessage], role: str) -> list[ChatMessage]:
    """Merge runs of consecutive messages of `role` into one message."""
    result: list[ChatMessage] = []
    for message in messages:
        previous = result[-1] if result else None
        if message.role == role and previous is not None and previous.role == role:
            merged = _parts(previous) + _parts(message)
            update: dict[str, object] = {"content": merged}
            if isinstance(previous, ChatMessageAssistant) and isinstance(
                message, ChatMessageAssistant
            ):
                calls = (previous.tool_calls or []) + (message.tool_calls or [])
                update["tool_calls"] = calls or None
            result[-1] = previous.model_copy(update=update)
        else:
            result.append(message)
    return result


def _parts(message: ChatMessage) -> list[Content]:
    if isinstance(message.content, str):
        return [ContentText(text=message.content)] if message.content else []
    return list(message.content)


def resolve_tools(
    messages: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice | None,
    api: ModelAPI,
) -> tuple[list[ToolInfo], ToolChoice]:
    """Default the tool choice, and declare history tools for providers that need them."""
    if not tools and api.tools_required:
        names = {
            call.function
            for m in messages
            if isinstance(m, ChatMessageAssistant) and m.tool_calls
            for call in m.tool_calls
        }
        if names:
            return [ToolInfo(name=n) for n in sorted(names)], "none"
    if tool_choice is None:
        tool_choice = "auto" if tools else "none"
    return tools, tool_choice
