"""Engine results -> OpenAI response bodies and stream chunks (chat and text completions).

Prompt logprobs take two shapes, both vLLM's:

* completions with echo and logprobs: the prompt's tokens lead the legacy
  parallel lists; the first token has no logprob (null) and no alternatives
  (null); each later `top_logprobs` entry holds the token itself and the top k
  (k or k+1 entries). `text_offset` indexes the returned text; special tokens
  (BOS, template markers), absent from it, have zero width.
* `prompt_logprobs` (chat: top level; completions: per choice): a list with
  null for the first token, then `{token_id: {"logprob", "rank",
  "decoded_token"}}` holding the token itself and the top k.

Logprobs of -inf are sent as -9999.0, as vLLM does: JSON has no infinity.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from gauge.serve.engines.base import Choice, Delta, EngineResult, PromptLogprob, TokenInfo

if TYPE_CHECKING:
    from gauge.serve.schemas import Parsed

FLOOR = -9999.0
"""The logprob sent for -inf."""


def new_id(prefix: str) -> str:
    """A fresh response id such as `chatcmpl-1f0c...` (32 random hex digits)."""
    # os.urandom, not uuid4().hex: the same 128 random bits at a fifth of the cost
    # (0.8 vs 3.9 us), once per response.
    return f"{prefix}-{os.urandom(16).hex()}"


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
    """A `chat.completion` body (with vLLM's top-level prompt_logprobs when asked)."""
    body = {
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
    if result.prompt_logprobs is not None:
        body["prompt_logprobs"] = prompt_logprobs(result.prompt_logprobs)
    return body


def completion_response(
    model: str, results: list[EngineResult], parsed: Parsed | None = None
) -> dict[str, Any]:
    """A `text_completion` body; prompt p's choice j has index p * n + j.

    `parsed` says whether the prompt's logprobs lead each choice's logprobs (echo)
    and whether choices carry vLLM's prompt_logprobs.
    """
    choices: list[dict[str, Any]] = []
    echo = parsed is not None and parsed.requests[0].echo
    for result in results:
        for c in result.choices:
            if echo and parsed is not None and parsed.logprobs is not None:
                choice = echo_choice(len(choices), c, result.prompt_logprobs, parsed.logprobs)
            else:
                choice = completion_choice(len(choices), c)
            if parsed is not None and parsed.prompt_logprobs is not None:
                choice["prompt_logprobs"] = prompt_logprobs(
                    result.prompt_logprobs or [], parsed.prompt_logprobs
                )
            choices.append(choice)
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


def echo_choice(
    index: int, c: Choice, prompt: list[PromptLogprob] | None, k: int
) -> dict[str, Any]:
    """A completion choice whose logprobs cover the echoed prompt, then the generated tokens."""
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    widths: list[bool] = []
    for p in prompt or []:
        tokens.append(p.token)
        values.append(None if p.logprob is None else _finite(p.logprob))
        tops.append(None if p.logprob is None else _top_by_text(p, k))
        widths.append(not p.special)
    for t in c.logprobs or []:
        tokens.append(t.token)
        values.append(_finite(t.logprob))
        tops.append({alt: _finite(value) for alt, value, _ in t.top})
        widths.append(True)
    return {
        "index": index,
        "text": c.text,
        "logprobs": {
            "tokens": tokens,
            "token_logprobs": values,
            "top_logprobs": tops,
            "text_offset": text_offsets(tokens, widths, c.text),
        },
        "finish_reason": c.finish_reason,
    }


def prompt_logprobs(
    tokens: list[PromptLogprob], k: int | None = None
) -> list[dict[str, dict[str, Any]] | None]:
    """vLLM's prompt_logprobs list: null first, then each token and its top k by token id."""
    out: list[dict[str, dict[str, Any]] | None] = []
    for p in tokens:
        if p.logprob is None:
            out.append(None)
            continue
        entries = {str(p.token_id): _entry(p.logprob, p.rank, p.token)}
        for token_id, text, value, rank in p.top:
            if (k is None or rank <= k) and token_id != p.token_id:
                entries[str(token_id)] = _entry(value, rank, text)
        out.append(entries)
    return out


def text_offsets(tokens: list[str], widths: list[bool], text: str) -> list[int]:
    """Where each token starts in `text`.

    Tokens are matched in order; a token without width (a special token) or one
    whose text is not at the cursor (part of a multi-byte character, or text the
    decoder normalised) starts at the cursor, and the next token found within a
    few characters moves the cursor on. Never fails: offsets stay in order.
    """
    offsets: list[int] = []
    pos = 0
    for token, wide in zip(tokens, widths, strict=True):
        if not wide or not token:
            offsets.append(pos)
            continue
        if text.startswith(token, pos):
            offsets.append(pos)
            pos += len(token)
            continue
        # SentencePiece drops the space of the first word; bytes of one character
        # come as several tokens: look a little ahead.
        found = text.find(token.lstrip(" ") or token, pos, pos + len(token) + 8)
        if found >= 0 and "\ufffd" not in token:
            offsets.append(found)
            pos = found + len(token.lstrip(" ") or token)
        else:
            offsets.append(pos)
    return offsets


def _top_by_text(p: PromptLogprob, k: int) -> dict[str, float]:
    top = {p.token: _finite(p.logprob if p.logprob is not None else FLOOR)}
    for _, text, value, rank in p.top:
        if rank <= k:
            top.setdefault(text, _finite(value))
    return top


def _entry(value: float, rank: int | None, text: str) -> dict[str, Any]:
    return {"logprob": _finite(value), "rank": rank, "decoded_token": text}


def _finite(value: float) -> float:
    return value if value > FLOOR else FLOOR


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
