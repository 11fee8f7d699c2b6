"""gauge messages, tools and config -> a Gemini `generateContent` request body.

System messages become `systemInstruction`; assistant turns are role `model`;
tool results are `functionResponse` parts in a user turn (consecutive turns of
one role are merged). Tool and response schemas are cut down to the OpenAPI
subset Gemini's `Schema` accepts (it rejects e.g. `additionalProperties`).

Thought signatures (which Gemini 2.5+ attaches to parts, and requires back on
function calls) travel as signature-only ContentReasoning parts placed where the
signed part was; on replay a signature goes onto the next part sent.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.content import (
    ContentAudio,
    ContentImage,
    ContentReasoning,
    ContentText,
    ContentVideo,
)
from gauge.model.messages import ChatMessage, ChatMessageAssistant, ChatMessageTool
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo

_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
        "maximum",
    }
)  # fmt: skip

_GENERATION_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("max_tokens", "maxOutputTokens"),
    ("num_choices", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def build_body(
    input: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
    safety_settings: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The JSON body for `models/<model>:generateContent`."""
    system, contents = convert_messages(input)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if tools:
        body["tools"] = [{"functionDeclarations": [function_declaration(t) for t in tools]}]
        body["toolConfig"] = {"functionCallingConfig": calling_config(tool_choice)}
    generation = generation_config(config)
    if generation:
        body["generationConfig"] = generation
    if safety_settings:
        body["safetySettings"] = safety_settings
    if config.extra_body:
        body.update(config.extra_body)
    return body


def generation_config(config: GenerateConfig) -> dict[str, Any]:
    """The `generationConfig` object (empty when nothing is set)."""
    result: dict[str, Any] = {}
    for field, wire in _GENERATION_FIELDS:
        value = getattr(config, field)
        if value is not None:
            result[wire] = value
    if config.stop_seqs:
        result["stopSequences"] = config.stop_seqs
    if config.logprobs:
        result["responseLogprobs"] = True
        if config.top_logprobs is not None:
            result["logprobs"] = config.top_logprobs
    if config.response_schema is not None:
        result["responseMimeType"] = "application/json"
        result["responseSchema"] = clean_schema(config.response_schema.json_schema)
    return result


def convert_messages(
    input: list[ChatMessage],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system parts, contents) in Gemini's shape."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in input:
        if message.role == "system":
            if text := message.text:
                system.append({"text": text})
            continue
        if isinstance(message, ChatMessageAssistant):
            for call in message.tool_calls or ():
                call_names[call.id] = call.function
            role, parts = "model", model_parts(message)
        elif isinstance(message, ChatMessageTool):
            role, parts = "user", [function_response(message, call_names)]
        else:
            role, parts = "user", content_parts(message.content)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def content_parts(content: str | list[Any]) -> list[dict[str, Any]]:
    """Text and media parts of user content."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ContentText):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, ContentImage):
            parts.append(media_part(part.image))
        elif isinstance(part, ContentAudio):
            parts.append(media_part(part.audio, f"audio/{part.format}"))
        elif isinstance(part, ContentVideo):
            parts.append(media_part(part.video, _VIDEO_TYPES[part.format]))
    return parts


_VIDEO_TYPES = {"mp4": "video/mp4", "mpeg": "video/mpeg", "mov": "video/quicktime"}


def media_part(source: str, mime_type: str | None = None) -> dict[str, Any]:
    """`inlineData` for a base64 data URI, `fileData` for a URL (gs://, https://, Files API)."""
    if source.startswith("data:"):
        header, sep, data = source.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ConfigError(
                f"expected a base64 data URI (data:<type>;base64,...), got {source[:40]!r}"
            )
        return {"inlineData": {"mimeType": header[5:-7] or mime_type, "data": data}}
    if source.startswith(("http://", "https://", "gs://")):
        guessed = mime_type or mimetypes.guess_type(source.split("?")[0])[0]
        if guessed is None:
            raise ConfigError(
                f"cannot tell the media type of {source[:60]!r}; use a data URI or a URL "
                "ending in a known extension (.png, .jpg, .mp3, ...)"
            )
        return {"fileData": {"mimeType": guessed, "fileUri": source}}
    raise ConfigError(f"google media must be a base64 data URI or a URL, got {source[:40]!r}")


def model_parts(message: ChatMessageAssistant) -> list[dict[str, Any]]:
    """Text, thought and functionCall parts, thought signatures restored."""
    parts: list[dict[str, Any]] = []
    pending: str | None = None
    content = message.content
    for part in [ContentText(text=content)] if isinstance(content, str) else content:
        if isinstance(part, ContentReasoning):
            if part.redacted or not part.reasoning:
                pending = part.signature
            elif part.signature:
                parts.append(
                    {"text": part.reasoning, "thought": True, "thoughtSignature": part.signature}
                )
        elif isinstance(part, ContentText) and (part.text or pending):
            parts.append(_signed({"text": part.text}, pending))
            pending = None
    for call in message.tool_calls or ():
        parts.append(
            _signed({"functionCall": {"name": call.function, "args": call.arguments}}, pending)
        )
        pending = None
    if pending:
        parts.append({"text": "", "thoughtSignature": pending})
    return parts


def _signed(part: dict[str, Any], signature: str | None) -> dict[str, Any]:
    if signature:
        part["thoughtSignature"] = signature
    return part


def function_response(message: ChatMessageTool, call_names: dict[str, str]) -> dict[str, Any]:
    """A functionResponse part; the function name comes from the message or its call."""
    name = message.function or call_names.get(message.tool_call_id or "")
    if not name:
        raise ConfigError(
            "google tool messages need `function` (or a tool_call_id matching an earlier call)"
        )
    if message.error is not None:
        response: dict[str, Any] = {"error": message.error.message}
    else:
        response = {"content": message.text}
    return {"functionResponse": {"name": name, "response": response}}


def function_declaration(tool: ToolInfo) -> dict[str, Any]:
    """A functionDeclarations entry."""
    result: dict[str, Any] = {"name": tool.name}
    if tool.description:
        result["description"] = tool.description
    params = tool.parameters
    if params.properties:
        schema: dict[str, Any] = {"type": "object", "properties": params.properties}
        if params.required:
            schema["required"] = params.required
        result["parameters"] = clean_schema(schema)
    return result


def calling_config(choice: ToolChoice) -> dict[str, Any]:
    """functionCallingConfig for auto / any / none / a named function."""
    if isinstance(choice, ToolFunction):
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": choice.upper()}


def clean_schema(schema: Any) -> Any:
    """A JSON schema reduced to Gemini's OpenAPI subset (nullable unions folded)."""
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            result[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "items":
            result[key] = clean_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            result[key] = [clean_schema(sub) for sub in value]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            result[key] = types[0] if len(types) == 1 else value
            if "null" in value:
                result["nullable"] = True
        else:
            result[key] = value
    return result
