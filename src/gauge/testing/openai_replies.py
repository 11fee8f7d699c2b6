"""Spec-shaped answers of the mock OpenAI server: chat and text completions, and their chunks.

Replies echo the last user message (or a fixed `reply`), one word per token,
honouring `n`, `max_tokens` / `max_completion_tokens` (finish_reason "length"),
`stop`, `logprobs` / `top_logprobs`, tools with a required or named
`tool_choice` (a tool call with `{}` arguments), and `reasoning_effort` (a
`reasoning_content` field, as vLLM and DeepSeek send it).
"""

from __future__ import annotations

import time
from typing import Any


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return ""


def _words(text: str) -> list[str]:
    return text.split()


def _shape(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """(text, finish_reason) after `stop` and the token limit (one word = one token)."""
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops or ():
        if stop and stop in text:
            text = text[: text.index(stop)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    words = text.split(" ")
    if limit is not None and len(words) > limit:
        return " ".join(words[:limit]), "length"
    return text, "stop"


def _usage(prompt_text: str, outputs: list[str], reasoning: int = 0) -> dict[str, Any]:
    prompt = len(_words(prompt_text))
    completion = sum(len(_words(t)) for t in outputs) + reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def _chat_logprobs(text: str, top: int) -> dict[str, Any]:
    content = []
    for i, word in enumerate(text.split(" ") if text else []):
        token = word if i == 0 else " " + word
        content.append(
            {
                "token": token,
                "logprob": -0.1 * (i + 1),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {
                        "token": token if k == 0 else f"{token}#{k}",
                        "logprob": -0.1 * (i + 1 + k),
                        "bytes": None,
                    }
                    for k in range(top)
                ],
            }
        )
    return {"content": content, "refusal": None}


def chat_reply(body: dict[str, Any], reply: str | None = None) -> dict[str, Any]:
    """The default chat.completion for a request body."""
    messages = body.get("messages") or []
    last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    source = reply if reply is not None else _text(last_user.get("content"))
    text, finish = _shape(source, body)
    tools = body.get("tools") or []
    choice_arg = body.get("tool_choice")
    call_tool = None
    if tools and choice_arg == "required":
        call_tool = tools[0]["function"]["name"]
    elif tools and isinstance(choice_arg, dict):
        call_tool = choice_arg["function"]["name"]
    effort = body.get("reasoning_effort")
    reasoning = f"Reasoning at {effort} effort." if effort else None
    choices = []
    for index in range(body.get("n") or 1):
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        finish_reason = finish
        if call_tool is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{index}",
                    "type": "function",
                    "function": {"name": call_tool, "arguments": "{}"},
                }
            ]
            finish_reason = "tool_calls"
        if reasoning:
            message["reasoning_content"] = reasoning
        logprobs = None
        if body.get("logprobs"):
            logprobs = _chat_logprobs(text, body.get("top_logprobs") or 0)
        choices.append(
            {
                "index": index,
                "message": message,
                "finish_reason": finish_reason,
                "logprobs": logprobs,
            }
        )
    prompt_text = " ".join(_text(m.get("content")) for m in messages)
    n_reasoning = len(_words(reasoning)) if reasoning else 0
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": choices,
        "usage": _usage(prompt_text, [text] * len(choices), n_reasoning),
        "system_fingerprint": "fp_mock",
    }


def completion_reply(body: dict[str, Any], reply: str | None = None) -> dict[str, Any]:
    """The default text_completion for a request body."""
    prompt = body.get("prompt")
    prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
    text, finish = _shape(reply if reply is not None else prompt_text, body)
    top = body.get("logprobs")
    choices = []
    for index in range(body.get("n") or 1):
        logprobs = None
        if top is not None:
            tokens = [
                w if i == 0 else " " + w for i, w in enumerate(text.split(" ") if text else [])
            ]
            logprobs = {
                "tokens": tokens,
                "token_logprobs": [-0.1 * (i + 1) for i in range(len(tokens))],
                "top_logprobs": [
                    {tok if k == 0 else f"{tok}#{k}": -0.1 * (i + 1 + k) for k in range(top)}
                    for i, tok in enumerate(tokens)
                ],
                "text_offset": [0] * len(tokens),
            }
        choices.append(
            {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}
        )
    return {
        "id": "cmpl-mock",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": choices,
        "usage": _usage(prompt_text, [text] * len(choices)),
    }


def chat_chunks(data: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat.completion as the chunks a streaming server would send."""
    base = {
        "id": data["id"],
        "object": "chat.completion.chunk",
        "created": data["created"],
        "model": data["model"],
    }
    chunks: list[dict[str, Any]] = []
    for choice in data["choices"]:
        index = choice["index"]
        message = choice["message"]
        chunks.append(
            {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        )
        text = message.get("content") or ""
        for i, word in enumerate(text.split(" ") if text else []):
            delta = {"content": word if i == 0 else " " + word}
            chunks.append(
                {**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}
            )
        if message.get("tool_calls"):
            calls = [{"index": k, **call} for k, call in enumerate(message["tool_calls"])]
            chunks.append(
                {
                    **base,
                    "choices": [
                        {"index": index, "delta": {"tool_calls": calls}, "finish_reason": None}
                    ],
                }
            )
        chunks.append(
            {
                **base,
                "choices": [
                    {"index": index, "delta": {}, "finish_reason": choice["finish_reason"]}
                ],
            }
        )
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": data["usage"]})
    return chunks


def completion_chunks(data: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """A text_completion as streamed chunks."""
    base = {
        "id": data["id"],
        "object": "text_completion",
        "created": data["created"],
        "model": data["model"],
    }
    chunks: list[dict[str, Any]] = []
    for choice in data["choices"]:
        text = choice["text"]
        for i, word in enumerate(text.split(" ") if text else []):
            piece = word if i == 0 else " " + word
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": choice["index"],
                            "text": piece,
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    ],
                }
            )
        chunks.append(
            {
                **base,
                "choices": [
                    {
                        "index": choice["index"],
                        "text": "",
                        "finish_reason": choice["finish_reason"],
                        "logprobs": None,
                    }
                ],
            }
        )
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": data["usage"]})
    return chunks


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "gauge-mock"}
