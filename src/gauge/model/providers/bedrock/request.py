"""Messages, tools and GenerateConfig -> a Bedrock Converse request body.

Converse differs from the chat-completions shape in ways that matter here:
system prompts are a top-level list; roles must alternate user/assistant, so
tool results (user-side `toolResult` blocks) merge with neighbouring user turns;
images are bytes (base64 on the JSON wire), never URLs; any conversation holding
tool blocks must carry a `toolConfig`. Model-specific fields (Anthropic's top_k,
thinking) travel in `additionalModelRequestFields`.
"""

from __future__ import annotations

import re
from typing import Any

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.messages import ChatMessage, ChatMessageAssistant, ChatMessageTool
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo

# Cross-region inference profiles prefix the model id with a geography.
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|jp|au|ca|global|us-gov)\.")
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
CACHING_FAMILIES = frozenset({"anthropic", "amazon"})
"""Model families whose Converse requests take cachePoint blocks."""
_DATA_URI = re.compile(r"^data:image/([a-zA-Z0-9.+-]+);base64,(.*)$", re.DOTALL)


def model_family(model_id: str) -> str:
    """The vendor of a Bedrock model id: anthropic, meta, mistral, amazon, ... ('' if unknown).

    Accepts plain ids (`anthropic.claude-3-haiku-20240307-v1:0`), inference
    profiles (`us.meta.llama3-2-90b-instruct-v1:0`) and foundation-model ARNs.
    """
    base = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    base = _PROFILE_PREFIX.sub("", base)
    vendor, dot, _ = base.partition(".")
    return vendor if dot else ""


def converse_body(
    model_id: str,
    messages: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
) -> dict[str, Any]:
    """The JSON body of one `POST /model/{modelId}/converse` (or converse-stream)."""
    family = model_family(model_id)
    system, turns, has_tool_blocks = conversation(messages, family)
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    tool_config = tool_configuration(tools, tool_choice, has_tool_blocks)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    if config.model_fields_set:
        apply_config(body, config, model_id, family)
    return body


def apply_config(body: dict[str, Any], config: GenerateConfig, model_id: str, family: str) -> None:
    """inferenceConfig, Anthropic's top_k, and extra_body (merged last, so it wins)."""
    inference: dict[str, Any] = {}
    if config.max_tokens is not None:
        inference["maxTokens"] = config.max_tokens
    if config.temperature is not None:
        inference["temperature"] = config.temperature
    if config.top_p is not None:
        inference["topP"] = config.top_p
    if config.stop_seqs:
        inference["stopSequences"] = config.stop_seqs
    if inference:
        body["inferenceConfig"] = inference
    if config.top_k is not None:
        if family != "anthropic":
            raise ConfigError(
                f"bedrock passes top_k only to Anthropic models, not {model_id!r}; remove top_k"
            )
        body["additionalModelRequestFields"] = {"top_k": config.top_k}
    if config.cache_prompt:
        add_cache_points(body, model_id, family, config.cache_prompt)
    if config.extra_body:
        for key, value in config.extra_body.items():
            current = body.get(key)
            if isinstance(current, dict) and isinstance(value, dict):
                body[key] = {**current, **value}
            else:
                body[key] = value


def add_cache_points(body: dict[str, Any], model_id: str, family: str, mode: object) -> None:
    """Cache points after the system prompt, the tools and the last user turn.

    Only Anthropic and Amazon (Nova) models take cache points; others reject the
    request, so `auto` skips them and an explicit True is an error.
    """
    if family not in CACHING_FAMILIES:
        if mode == "auto":
            return
        raise ConfigError(
            f"bedrock prompt caching works with Anthropic and Amazon Nova models, not "
            f"{model_id!r}; remove cache_prompt or set it to 'auto'"
        )
    if body.get("system"):
        body["system"].append({"cachePoint": {"type": "default"}})
    if "toolConfig" in body:
        body["toolConfig"]["tools"].append({"cachePoint": {"type": "default"}})
    for turn in reversed(body["messages"]):
        if turn["role"] == "user" and turn["content"]:
            turn["content"].append({"cachePoint": {"type": "default"}})
            break


def conversation(
    messages: list[ChatMessage], family: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(system blocks, alternating turns, whether any turn holds tool blocks)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    has_tool_blocks = False
    for m in messages:
        if m.role == "system":
            if m.text:
                system.append({"text": m.text})
            continue
        if isinstance(m, ChatMessageTool):
            role, blocks = "user", [tool_result(m, family)]
            has_tool_blocks = True
        elif isinstance(m, ChatMessageAssistant):
            role, blocks = "assistant", assistant_blocks(m, family)
            has_tool_blocks = has_tool_blocks or bool(m.tool_calls)
        else:
            role, blocks = "user", user_blocks(m.content)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns, has_tool_blocks


def user_blocks(content: Any) -> list[dict[str, Any]]:
    """Text and image blocks of a user message (Converse rejects empty text blocks)."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, ContentText):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ContentImage):
            blocks.append(image_block(part.image))
        elif not isinstance(part, ContentReasoning):
            raise ConfigError(
                f"bedrock Converse here takes text and images, not {type(part).__name__}"
            )
    return blocks


def assistant_blocks(m: ChatMessageAssistant, family: str) -> list[dict[str, Any]]:
    """Reasoning (replayed for Anthropic), text, then toolUse blocks."""
    blocks: list[dict[str, Any]] = []
    if isinstance(m.content, str):
        if m.content:
            blocks.append({"text": m.content})
    else:
        for part in m.content:
            if isinstance(part, ContentText):
                if part.text:
                    blocks.append({"text": part.text})
            elif isinstance(part, ContentReasoning):
                if family == "anthropic":
                    blocks.append(reasoning_block(part))
            elif isinstance(part, ContentImage):
                blocks.append(image_block(part.image))
    for call in m.tool_calls or ():
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.function, "input": call.arguments}}
        )
    return blocks


def reasoning_block(part: ContentReasoning) -> dict[str, Any]:
    """A reasoningContent block: signed text, or the opaque redacted bytes (base64)."""
    if part.redacted:
        return {"reasoningContent": {"redactedContent": part.reasoning}}
    text: dict[str, Any] = {"text": part.reasoning}
    if part.signature:
        text["signature"] = part.signature
    return {"reasoningContent": {"reasoningText": text}}


def tool_result(m: ChatMessageTool, family: str) -> dict[str, Any]:
    """A toolResult block; `status` is sent only to Anthropic models, the ones that take it."""
    text = m.error.message if m.error is not None else m.text
    # Converse rejects empty text blocks; say so in words the model can read.
    result: dict[str, Any] = {
        "toolUseId": m.tool_call_id or "",
        "content": [{"text": text or "(no output)"}],
    }
    if m.error is not None and family == "anthropic":
        result["status"] = "error"
    return {"toolResult": result}


def image_block(image: str) -> dict[str, Any]:
    """An image block from a base64 data URI (Converse takes bytes, not URLs)."""
    match = _DATA_URI.match(image)
    if match is None:
        shown = image if len(image) <= 60 else image[:57] + "..."
        raise ConfigError(
            f"bedrock Converse takes image bytes, not {shown!r}: pass the image as a data URI "
            "(data:image/png;base64,...)"
        )
    subtype, data = match.groups()
    fmt = _IMAGE_FORMATS.get(subtype.lower())
    if fmt is None:
        raise ConfigError(
            f"bedrock Converse takes png, jpeg, gif or webp images, not image/{subtype}"
        )
    # The JSON wire carries blobs as base64: the data URI's payload goes as is.
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def tool_configuration(
    tools: list[ToolInfo], tool_choice: ToolChoice, has_tool_blocks: bool
) -> dict[str, Any] | None:
    """toolConfig, or None when no tools should be offered.

    Converse has no "none" choice: tools are left out instead, unless the
    conversation holds tool blocks, for which Converse requires a toolConfig.
    """
    if not tools:
        if isinstance(tool_choice, ToolFunction) or tool_choice == "any":
            raise ConfigError("tool_choice asks for a tool call but no tools were given")
        return None
    if tool_choice == "none" and not has_tool_blocks:
        return None
    specs = []
    for t in tools:
        spec: dict[str, Any] = {
            "name": t.name,
            "inputSchema": {"json": t.parameters.model_dump(exclude_none=True)},
        }
        if t.description:
            spec["description"] = t.description
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if isinstance(tool_choice, ToolFunction):
        if tool_choice.name not in {t.name for t in tools}:
            names = ", ".join(t.name for t in tools)
            raise ConfigError(f"tool_choice names {tool_choice.name!r}, not one of: {names}")
        config["toolChoice"] = {"tool": {"name": tool_choice.name}}
    elif tool_choice == "any":
        config["toolChoice"] = {"any": {}}
    return config
