"""What a template provider's `create_payload` receives: lm-eval-style gen_kwargs and messages.

GenerateConfig ──► gen_kwargs   {"until": [...], "max_gen_toks": n, "do_sample": bool,
                                 "temperature": t, "top_p": p, ...}
ChatMessage[]  ──► one conversation as OpenAI-style dicts ("chat"),
                   or one prompt string ("text")
"""

from __future__ import annotations

from typing import Any

import orjson

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage

GEN_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_seqs",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "extra_headers",
        "extra_body",
    }
)
"""GenerateConfig fields a template provider receives (in gen_kwargs, seed=, headers, body)."""

# GenerateConfig name -> lm-eval gen_kwargs name, for the fields passed through as they are.
_PASSED = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("frequency_penalty", "frequency_penalty"),
    ("presence_penalty", "presence_penalty"),
)


def gen_kwargs(config: GenerateConfig, max_gen_toks: int) -> dict[str, Any]:
    """lm-eval's gen_kwargs for `config`: until, max_gen_toks, do_sample, and what is set.

    `max_gen_toks` is the default when `config.max_tokens` is unset. `do_sample` is
    True only for a temperature above 0, as in lm-eval's greedy-by-default tasks.
    """
    out: dict[str, Any] = {
        "until": list(config.stop_seqs or ()),
        "max_gen_toks": config.max_tokens if config.max_tokens is not None else max_gen_toks,
        "do_sample": bool(config.temperature),
    }
    for field, name in _PASSED:
        value = getattr(config, field)
        if value is not None:
            out[name] = value
    return out


def group_key(kwargs: dict[str, Any], seed: int | None, config: GenerateConfig) -> bytes:
    """Requests whose payload settings are equal can share one batched call."""
    return orjson.dumps(
        [kwargs, seed, config.extra_headers, config.extra_body],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        default=repr,
    )


def chat_dicts(messages: list[ChatMessage], provider: str) -> list[dict[str, str]]:
    """The conversation as OpenAI-style `{"role", "content"}` dicts (text only)."""
    out = []
    for message in messages:
        if isinstance(message.content, list) and any(
            part.type != "text" and part.type != "reasoning" for part in message.content
        ):
            raise ConfigError(
                f"provider {provider!r} sends text only; remove images/audio/video "
                "from the conversation"
            )
        if getattr(message, "tool_calls", None) or message.role == "tool":
            raise ConfigError(
                f"provider {provider!r} takes no tool calls; use a chat provider with tools"
            )
        out.append({"role": message.role, "content": message.text})
    return out
