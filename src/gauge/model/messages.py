"""Chat messages: system, user, assistant and tool, discriminated by `role`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.tools import ToolCall, ToolCallError


class ChatMessageBase(BaseModel):
    """Fields and helpers shared by every message."""

    content: str | list[Content]
    id: str | None = None
    source: Literal["input", "generate"] | None = None
    metadata: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        """The message's text: the string content, or its text parts joined by newlines."""
        content = self.content
        if isinstance(content, str):
            return content
        return "\n".join(part.text for part in content if isinstance(part, ContentText))

    @text.setter
    def text(self, value: str) -> None:
        content = self.content
        if isinstance(content, str):
            self.content = value
            return
        # Keep non-text parts (images, reasoning), replace all text with one part.
        kept: list[Content] = [p for p in content if not isinstance(p, ContentText)]
        self.content = [*kept, ContentText(text=value)]


class ChatMessageSystem(ChatMessageBase):
    """System message."""

    role: Literal["system"] = "system"


class ChatMessageUser(ChatMessageBase):
    """User message."""

    role: Literal["user"] = "user"
    tool_call_id: list[str] | None = None
    """Tool calls this message answers (providers that send tool images as user turns)."""


class ChatMessageAssistant(ChatMessageBase):
    """Assistant message, possibly with tool calls and reasoning."""

    role: Literal["assistant"] = "assistant"
    tool_calls: list[ToolCall] | None = None
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _reasoning_part(cls, data: Any) -> Any:
        # Inspect AI spells reasoning as a keyword, `ChatMessageAssistant(reasoning=...)`;
        # gauge keeps it as a leading ContentReasoning part rather than dropping it.
        if isinstance(data, dict) and "reasoning" in data:
            data = dict(data)
            reasoning = data.pop("reasoning")
            if reasoning is not None:
                content = data.get("content", "")
                parts = [ContentText(text=content)] if isinstance(content, str) else content
                if isinstance(content, str) and not content:
                    parts = []
                data["content"] = [ContentReasoning(reasoning=str(reasoning)), *parts]
        return data

    @property
    def reasoning(self) -> str | None:
        """The readable reasoning parts joined by newlines, or None when there are none."""
        if isinstance(self.content, str):
            return None
        parts = [
            p.reasoning for p in self.content if isinstance(p, ContentReasoning) and not p.redacted
        ]
        return "\n".join(parts) if parts else None


class ChatMessageTool(ChatMessageBase):
    """The result of a tool call."""

    role: Literal["tool"] = "tool"
    tool_call_id: str | None = None
    function: str | None = None
    error: ToolCallError | None = None


ChatMessage = Annotated[
    ChatMessageSystem | ChatMessageUser | ChatMessageAssistant | ChatMessageTool,
    Field(discriminator="role"),
]
"""Any chat message; the `role` field selects the class when parsing JSON."""
