"""OpenAI chat/completions response bodies and SSE chunks -> ModelOutput.

The body was parsed by orjson from the provider's answer; objects are built
without re-validation, since every value is read and typed here (see
`gauge.model._build.trusted`). A body that lacks what the format promises raises
`MalformedResponse`, which the pipeline treats as transient.
"""

from __future__ import annotations

from typing import Any

import orjson

from gauge.model._build import trusted
from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import (
    ChatCompletionChoice,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    StopReason,
    StreamInfo,
    TopLogprob,
)
from gauge.model.providers._http import HTTPConnectionError, HTTPStatusError, error_message
from gauge.model.tools import ToolCall

STOP_REASONS: dict[str | None, StopReason] = {
    "stop": "stop",
    "eos": "stop",
    "length": "max_tokens",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class MalformedResponse(HTTPConnectionError):
    """A 2xx answer that is not a usable chat/completions body (retried as transient)."""


def chat_output(body: Any, fallback_model: str) -> ModelOutput:
    """A ModelOutput from a `/chat/completions` response body."""
    choices = _choices(body)
    model = body.get("model") or fallback_model
    out = []
    for choice in choices:
        message = choice.get("message")
        if not isinstance(message, dict):
            raise MalformedResponse(f"choice without a message: {_excerpt(choice)}")
        out.append(
            trusted(
                ChatCompletionChoice,
                {
                    "message": assistant_message(message, model),
                    "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "unknown"),
                    "logprobs": chat_logprobs(choice.get("logprobs")),
                },
            )
        )
    return _output(model, out, body)


def completion_output(body: Any, fallback_model: str) -> ModelOutput:
    """A ModelOutput from a `/completions` (text completion) response body."""
    choices = _choices(body)
    model = body.get("model") or fallback_model
    out = []
    for choice in choices:
        text = choice.get("text")
        if not isinstance(text, str):
            raise MalformedResponse(f"completion choice without text: {_excerpt(choice)}")
        out.append(
            trusted(
                ChatCompletionChoice,
                {
                    "message": _message(text, None, model),
                    "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "unknown"),
                    "logprobs": completion_logprobs(choice.get("logprobs")),
                },
            )
        )
    return _output(model, out, body)


def _output(model: str, choices: list[ChatCompletionChoice], body: dict[str, Any]) -> ModelOutput:
    return trusted(
        ModelOutput,
        {
            "model": model,
            "choices": choices,
            "usage": usage(body.get("usage")),
            "time": None,
            "metadata": None,
            "error": None,
            "headers": None,
            "call": None,
        },
    )


def _choices(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise MalformedResponse(f"response is not a JSON object: {_excerpt(body)}")
    choices = body.get("choices")
    if not isinstance(choices, list):
        if "error" in body:
            # Some gateways (OpenRouter) answer 200 with an error object.
            raise HTTPStatusError(_error_status(body["error"]), error_message(body), body)
        raise MalformedResponse(f"response has no choices: {_excerpt(body)}")
    return choices


def assistant_message(message: dict[str, Any], model: str) -> ChatMessageAssistant:
    """The assistant message of one choice: text, refusal, reasoning and tool calls."""
    text = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    refusal = message.get("refusal")
    content: str | list[Content]
    if reasoning or refusal:
        parts: list[Content] = []
        if isinstance(reasoning, str) and reasoning:
            parts.append(
                trusted(
                    ContentReasoning,
                    {
                        "type": "reasoning",
                        "reasoning": reasoning,
                        "signature": None,
                        "redacted": False,
                    },
                )
            )
        if text:
            parts.append(trusted(ContentText, {"type": "text", "text": text, "refusal": None}))
        if refusal:
            parts.append(trusted(ContentText, {"type": "text", "text": refusal, "refusal": True}))
        content = parts
    else:
        content = text or ""
    calls = message.get("tool_calls")
    return _message(content, [tool_call(c) for c in calls] if calls else None, model)


def _message(
    content: str | list[Content], calls: list[ToolCall] | None, model: str
) -> ChatMessageAssistant:
    return trusted(
        ChatMessageAssistant,
        {
            "content": content,
            "id": None,
            "source": "generate",
            "metadata": None,
            "role": "assistant",
            "tool_calls": calls,
            "model": model,
        },
    )


def tool_call(call: dict[str, Any]) -> ToolCall:
    """A tool call; arguments that are not a JSON object set `parse_error`."""
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    arguments: dict[str, Any] = {}
    parse_error = None
    try:
        parsed = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
        if isinstance(parsed, dict):
            arguments = parsed
        else:
            parse_error = f"tool arguments are not a JSON object: {str(raw)[:200]}"
    except orjson.JSONDecodeError as ex:
        parse_error = f"tool arguments are not valid JSON ({ex}): {str(raw)[:200]}"
    return trusted(
        ToolCall,
        {
            "id": call.get("id") or "",
            "function": function.get("name") or "",
            "arguments": arguments,
            "type": "function",
            "parse_error": parse_error,
        },
    )


def chat_logprobs(data: Any) -> Logprobs | None:
    """Logprobs from the chat shape (`content: [...]`) or the completions shape."""
    if not isinstance(data, dict):
        return None
    content = data.get("content")
    if content is None:
        return completion_logprobs(data)
    items = [
        trusted(
            Logprob,
            {
                "token": item["token"],
                "logprob": item["logprob"],
                "bytes": item.get("bytes"),
                "top_logprobs": [
                    trusted(
                        TopLogprob,
                        {
                            "token": top["token"],
                            "logprob": top["logprob"],
                            "bytes": top.get("bytes"),
                        },
                    )
                    for top in item.get("top_logprobs") or ()
                ]
                or None,
            },
        )
        for item in content
    ]
    return trusted(Logprobs, {"content": items})


def completion_logprobs(data: Any) -> Logprobs | None:
    """Logprobs from the completions shape: parallel `tokens` / `token_logprobs` lists."""
    if not isinstance(data, dict):
        return None
    tokens = data.get("tokens") or []
    values = data.get("token_logprobs") or []
    tops = data.get("top_logprobs") or [None] * len(tokens)
    items = []
    for token, value, top in zip(tokens, values, tops, strict=False):
        alternatives = None
        if isinstance(top, dict):
            alternatives = [
                trusted(TopLogprob, {"token": t, "logprob": v, "bytes": None})
                for t, v in top.items()
            ]
        items.append(
            trusted(
                Logprob,
                {
                    "token": token,
                    # The first echoed prompt token has no logprob (null).
                    "logprob": float("nan") if value is None else value,
                    "bytes": None,
                    "top_logprobs": alternatives,
                },
            )
        )
    return trusted(Logprobs, {"content": items})


def usage(data: Any) -> ModelUsage | None:
    """Token usage, with cached-input and reasoning tokens where reported."""
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens") or 0
    completion = data.get("completion_tokens") or 0
    cached = reasoning = None
    if details := data.get("prompt_tokens_details"):
        cached = details.get("cached_tokens")
    if details := data.get("completion_tokens_details"):
        reasoning = details.get("reasoning_tokens")
    return trusted(
        ModelUsage,
        {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": data.get("total_tokens") or prompt + completion,
            "input_tokens_cache_write": None,
            "input_tokens_cache_read": cached,
            "reasoning_tokens": reasoning,
        },
    )


def chunk_text(event: bytes, text_key: str = "delta") -> tuple[str, bool]:
    """(text delta, first choice finished) from one SSE `data` payload."""
    text, info = stream_chunk(event, text_key)
    return text, info is not None and info.stop_reason is not None


def stream_chunk(event: bytes, text_key: str = "delta") -> tuple[str, StreamInfo | None]:
    """(text delta, what else the chunk said) from one SSE `data` payload.

    `text_key` is `delta` for chat chunks (`choices[0].delta.content`) and `text`
    for completions chunks (`choices[0].text`). The StreamInfo carries the first
    choice's stop reason when it finished, and the usage of the closing chunk
    (`stream_options.include_usage`). An error event raises.
    """
    try:
        chunk = orjson.loads(event)
    except orjson.JSONDecodeError:
        raise MalformedResponse(f"stream event is not JSON: {event[:200]!r}") from None
    if not isinstance(chunk, dict):
        raise MalformedResponse(f"stream event is not a JSON object: {event[:200]!r}")
    if "error" in chunk and not chunk.get("choices"):
        raise HTTPStatusError(_error_status(chunk["error"]), error_message(chunk), chunk)
    spent = usage(chunk.get("usage")) if chunk.get("usage") else None
    info = None if spent is None else StreamInfo(usage=spent)
    choices = chunk.get("choices") or ()
    if not choices:
        return "", info  # the usage-only chunk that closes a stream
    choice = choices[0]
    if choice.get("index", 0) != 0:
        return "", info  # with n > 1 only the first choice is streamed as text
    if (reason := choice.get("finish_reason")) is not None:
        info = info or StreamInfo()
        info.stop_reason = STOP_REASONS.get(reason, "unknown")
    if text_key == "text":
        return choice.get("text") or "", info
    delta = choice.get("delta") or {}
    return delta.get("content") or "", info


def _error_status(error: Any) -> int:
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code < 600:
        return code
    return 500


def _excerpt(value: Any) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else repr(value)
    return text[:200]
