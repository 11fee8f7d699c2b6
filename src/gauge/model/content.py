"""Content parts of a chat message: text, image, audio, video and reasoning."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class ContentText(BaseModel):
    """Text content."""

    type: Literal["text"] = "text"
    text: str
    refusal: bool | None = None
    """True when the model refused (some providers mark refusals)."""


class ContentImage(BaseModel):
    """Image content: an http(s) URL or a base64 data URI."""

    type: Literal["image"] = "image"
    image: str
    detail: Literal["auto", "low", "high"] = "auto"


class ContentAudio(BaseModel):
    """Audio content: a URL, a file path or a base64 data URI."""

    type: Literal["audio"] = "audio"
    audio: str
    format: Literal["wav", "mp3"]


class ContentVideo(BaseModel):
    """Video content: a URL, a file path or a base64 data URI."""

    type: Literal["video"] = "video"
    video: str
    format: Literal["mp4", "mpeg", "mov"]


class ContentReasoning(BaseModel):
    """Reasoning (thinking) produced by a model, replayable to providers that take it."""

    type: Literal["reasoning"] = "reasoning"
    reasoning: str
    signature: str | None = None
    """Provider signature that lets the reasoning be sent back (e.g. Anthropic thinking)."""
    redacted: bool = False
    """True when `reasoning` holds an opaque, encrypted block rather than readable text."""


Content = Annotated[
    ContentText | ContentImage | ContentAudio | ContentVideo | ContentReasoning,
    Field(discriminator="type"),
]
"""Any content part; the `type` field selects the class when parsing JSON."""
