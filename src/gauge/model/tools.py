"""Tool definitions, tool calls and tool choice."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ToolParams(BaseModel):
    """JSON-schema description of a tool's parameters (an object schema)."""

    type: Literal["object"] = "object"
    properties: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Property name -> JSON schema of that property."""
    required: list[str] = Field(default_factory=list)
    additionalProperties: bool = False


class ToolInfo(BaseModel):
    """A tool the model may call."""

    name: str
    description: str = ""
    parameters: ToolParams = Field(default_factory=ToolParams)


class ToolCall(BaseModel):
    """A call to a tool requested by the model."""

    id: str
    function: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    type: Literal["function"] = "function"
    parse_error: str | None = None
    """Set when the provider's arguments could not be parsed as JSON."""


class ToolFunction(BaseModel):
    """Forces the model to call one named tool."""

    name: str


ToolChoice = Literal["auto", "any", "none"] | ToolFunction
"""auto: model decides; any: must call some tool; none: must not call tools."""


class ToolCallError(BaseModel):
    """Why a tool call failed, reported back to the model in a tool message."""

    type: Literal[
        "parsing",
        "timeout",
        "unicode_decode",
        "permission",
        "file_not_found",
        "is_a_directory",
        "limit",
        "approval",
        "unknown",
    ]
    message: str
