"""Engine results -> OpenAI response bodies and stream chunks (chat and text completions)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from gauge.serve.engines.base import Choice, Delta, EngineResult, TokenInfo


def new_id(prefix: str) -> str:
    """A fresh response id such as `chatcmpl-1f0c...`."""
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    """The usage object."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def total_usage(results: list[EngineResult]) -> dict[str, int]:
    """Usage summed over the results of one request (several prompts)."""
    return usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results))


def chat_logprobs(tokens: list[TokenInfo] | None) -> dict[str, Any] | None:
    """Chat logprobs: `{"content": [...], "refusal": null}`."""
    if tokens is None:
        return None
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": t.bytes,
                "top_logprobs": [
                    {"token": alt, "logprob": value, "bytes": data} for alt, value, data in t.top
                ],
            }
            for t in tokens
        ],
        "refusal": None,
    }


def completion_logprobs(tokens: list[TokenInfo] | None, offset: int) -> dict[str, Any] | None:
    """Legacy completions logprobs: parallel lists, text offsets counted from `offset`."""
    if tokens is None:
        return None
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{alt: value for alt, value, _ in t.top} for t in tokens],
        "text_offset": offsets,
    }


def chat_response(model: str, role: str, result: EngineResult) -> dict[str, Any]:
    """A `chat.completion` body."""
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": role, "content": c.text, "refusal": None},
                "logprobs": chat_logprobs(c.logprobs),
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(result.choices)
        ],
        "usage": usage(result.prompt_tokens, result.completion_tokens),
    }


def completion_response(model: str, results: list[EngineResult]) -> dict[str, Any]:
    """A `text_completion` body; prompt p's choice j has index p * n + j."""
    choices: list[dict[str, Any]] = []
    for result in results:
        for c in result.choices:
            choices.append(completion_choice(len(choices), c))
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": total_usage(results),
    }


def completion_choice(index: int, c: Choice) -> dict[str, Any]:
    """One text completion choice (logprob offsets count from the text's start)."""
    generated = sum(len(t.token) for t in c.logprobs) if c.logprobs else 0
    offset = max(0, len(c.text) - generated) if c.logprobs else 0
    return {
        "index": index,
        "text": c.text,
        "logprobs": completion_logprobs(c.logprobs, offset),
        "finish_reason": c.finish_reason,
    }


class ChunkMaker:
    """The chunks of one streamed response (shared id, created and model)."""

    def __init__(self, chat: bool, model: str, role: str) -> None:
        self.chat = chat
        self.role = role
        self.base = {
            "id": new_id("chatcmpl" if chat else "cmpl"),
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }

    def opening(self, index: int) -> dict[str, Any] | None:
        """The first chunk of a chat choice (the role); completions have none."""
        if not self.chat:
            return None
        delta = {"role": self.role, "content": ""}
        return {**self.base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}

    def piece(self, index: int, delta: Delta) -> dict[str, Any]:
        """One delta as a chunk."""
        if self.chat:
            choice: dict[str, Any] = {
                "index": index,
                "delta": {"content": delta.text} if delta.text or not delta.finish_reason else {},
                "finish_reason": delta.finish_reason,
            }
            if delta.logprobs is not None:
                choice["logprobs"] = chat_logprobs(delta.logprobs)
        else:
            choice = {
                "index": index,
                "text": delta.text,
                "logprobs": completion_logprobs(delta.logprobs, 0),
                "finish_reason": delta.finish_reason,
            }
        return {**self.base, "choices": [choice]}

    def usage(self, results: list[EngineResult]) -> dict[str, Any]:
        """The closing chunk with usage (stream_options.include_usage)."""
        return {**self.base, "choices": [], "usage": total_usage(results)}


def model_list(model: str, created: int) -> dict[str, Any]:
    """The /v1/models body: the one served model."""
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "gauge"}],
    }
