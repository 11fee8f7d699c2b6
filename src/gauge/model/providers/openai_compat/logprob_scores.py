"""Response bodies -> Loglikelihood: the pure half of OpenAI-compatible scoring.

    score_positions        echoed /completions logprobs (token_logprobs, top_logprobs)
    text_span              where a continuation's tokens sit in an echo, by text_offset
    prompt_logprobs_score  vLLM's prompt_logprobs (chat or completions)
    truncate               lm-eval's left truncation of a token-id prompt

Nothing here does I/O; scoring.py sends the requests.
"""

from __future__ import annotations

from typing import Any

from gauge.errors import ConfigError, ModelError
from gauge.model.output import ModelUsage
from gauge.model.providers.openai_compat.response import MalformedResponse
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest, Tokenizer, split_whitespace

NEEDS_IDS = (
    "pass -M tokenizer=PATH (a HF tokenizer directory, tokenizer.json or .tiktoken file) "
    "or use a server with /tokenize (vLLM, gauge serve)"
)


def truncate(context: list[int], continuation: list[int], max_length: int) -> tuple[list[int], int]:
    """(prompt, index of the first continuation token) keeping the last `max_length` tokens.

    lm-eval's API models: the context is cut from the left; at least one context
    token must remain, since the first prompt token has no logprob.
    """
    whole = context + continuation
    prompt = whole[-max_length:]
    start = len(context) - (len(whole) - len(prompt))
    if start < 1:
        raise ConfigError(
            f"a continuation of {len(continuation)} tokens does not fit in max_length "
            f"{max_length} with a token of context; raise -M max_length= (the server's "
            "context length) or shorten the continuation"
        )
    return prompt, start


def score_positions(logprobs: dict[str, Any], first: int, end: int) -> Loglikelihood:
    """Sum the echoed prompt logprobs of positions [first, end) and check greediness.

    A position is greedy when its token's logprob is the largest among the
    position's top_logprobs (lm-eval's test).
    """
    values = logprobs["token_logprobs"]
    tops = logprobs.get("top_logprobs")
    if end > len(values) or first >= end:
        raise MalformedResponse(
            f"the echo has {len(values)} token logprobs; positions {first}..{end - 1} expected"
        )
    total = 0.0
    greedy = True
    for i in range(first, end):
        value = values[i]
        top = tops[i] if isinstance(tops, list) and i < len(tops) else None
        if not isinstance(value, int | float) or not isinstance(top, dict) or not top:
            # The same request would get the same answer: fatal, not retried.
            raise ModelError(
                f"the echo has no logprob and top_logprobs for prompt token {i}: the server "
                "does not score echoed prompts fully, so it cannot score loglikelihoods"
            )
        total += float(value)
        if value < max(top.values()):
            greedy = False
    return Loglikelihood(total, greedy, end - first)


def text_span(logprobs: dict[str, Any], context: str, prompt: str) -> tuple[int, int]:
    """Token positions [first, end) of `prompt[len(context):]` in an echo, by text_offset.

    A server may echo a bos token the text does not contain (`<s>` at offset 0
    shifts every later offset), so offsets are taken relative to where the
    prompt's text starts in the echoed tokens.
    """
    offsets = logprobs.get("text_offset")
    tokens = logprobs.get("tokens")
    if not isinstance(offsets, list) or not offsets:
        raise ModelError(
            "the server echoed no text_offset, so the continuation's tokens cannot be found "
            f"without a tokenizer: {NEEDS_IDS}"
        )
    shift = 0
    if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        found = "".join(tokens).find(prompt)
        if found >= 0:
            shift = offsets[0] + found
    start, stop = shift + len(context), shift + len(prompt)
    first = next((i for i, o in enumerate(offsets) if o >= start), len(offsets))
    end = next((i for i, o in enumerate(offsets) if o >= stop), len(offsets))
    return first, end


def prompt_logprobs_score(data: dict[str, Any], first: int, base_url: str | None) -> Loglikelihood:
    """Score positions [first, end) of vLLM's `prompt_logprobs` (token id -> Logprob).

    Each position maps the prompt's own token and the top-1 token to
    `{logprob, rank}`; the prompt's token is the one with the largest rank
    number (the only entry when it is the top-1), and it is greedy when no
    entry has a larger logprob.
    """
    positions = data.get("prompt_logprobs")
    if positions is None:
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            positions = choices[0].get("prompt_logprobs")
    if not isinstance(positions, list):
        raise ModelError(
            f"the server at {base_url} returned no prompt_logprobs: it does not support vLLM's "
            "prompt_logprobs extension (OpenAI's chat API does not), so chat scoring is not "
            "possible there; use a completions provider or vllm"
        )
    if first >= len(positions):
        raise MalformedResponse(
            f"prompt_logprobs has {len(positions)} positions; the answer starts at {first}"
        )
    total = 0.0
    greedy = True
    for i in range(first, len(positions)):
        entries = positions[i]
        if not isinstance(entries, dict) or not entries:
            raise MalformedResponse(f"no prompt logprob at position {i}")
        ranked = [e for e in entries.values() if isinstance(e, dict) and "logprob" in e]
        if not ranked:
            raise MalformedResponse(f"prompt logprob at position {i} has no 'logprob'")
        if len(ranked) == 1:
            own = ranked[0]  # the prompt's token is the top-1 itself
        elif all(isinstance(e.get("rank"), int) for e in ranked):
            own = max(ranked, key=lambda e: int(e["rank"]))
        else:
            raise ModelError(
                f"prompt_logprobs at position {i} lists several tokens without ranks, so the "
                "prompt's own token cannot be told apart; the server is not vLLM-compatible here"
            )
        total += float(own["logprob"])
        greedy = greedy and own["logprob"] >= max(e["logprob"] for e in ranked)
    return Loglikelihood(total, greedy, len(positions) - first)


def echo_choices(data: dict[str, Any], expected: int) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != expected:
        count = len(choices) if isinstance(choices, list) else 0
        raise MalformedResponse(f"expected {expected} choices for {expected} prompts, got {count}")
    if not all(isinstance(c, dict) for c in choices):
        raise MalformedResponse("a choice is not a JSON object")
    return sorted(choices, key=lambda c: c.get("index") or 0)


def echo_logprobs(choice: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("token_logprobs"), list):
        raise ModelError(
            f"the server at {base_url} returned no logprobs for an echoed prompt "
            "(echo=true, logprobs=1, max_tokens=0), so it cannot score loglikelihoods; "
            "use a vLLM server, gauge serve or hf/"
        )
    return logprobs


def add_usage(total: ModelUsage | None, more: ModelUsage | None) -> ModelUsage | None:
    if more is None:
        return total
    return more if total is None else total + more


def pair_texts(requests: list[LoglikelihoodRequest]) -> list[str]:
    """Every text `encode_pair` will encode for these requests."""
    texts = []
    for request in requests:
        if not request.context:
            texts.append(request.continuation)
            continue
        context, continuation = split_whitespace(request.context, request.continuation)
        texts += [context, context + continuation]
    return texts


def check_continuation(request: LoglikelihoodRequest) -> None:
    if not request.continuation:
        raise ConfigError(
            f"loglikelihood needs a non-empty continuation (context {request.context[:40]!r}); "
            "drop the item or give the text to score as the continuation"
        )


class Prefixed:
    """A tokenizer whose prefix token is the one this provider resolved."""

    def __init__(self, tokenizer: Tokenizer, prefix: int) -> None:
        self._tokenizer = tokenizer
        self._prefix = prefix

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids)

    @property
    def prefix_token_id(self) -> int | None:
        return self._prefix
