"""Loglikelihood scoring: the request and result types and lm-eval's tokenization rules.

Every backend (hf in process, completions endpoints with echo, chat endpoints
with prompt logprobs) tokenizes a (context, continuation) pair the same way,
with `encode_pair`, so their scores agree. The rules are lm-evaluation-harness's:

* `split_whitespace`: trailing whitespace of the context moves to the
  continuation (`"Q: 2+3= "`, `"5"` -> `"Q: 2+3="`, `" 5"`);
* `encode_pair`: the continuation's tokens are those of `encode(ctx + cont)` past
  the tokens of `encode(ctx)`, so a token that straddles the seam is scored as
  the model would see it; an empty context is the prefix token (bos, else eos);
* `rolling_windows`: a long text is cut into windows of at most `max_length`
  tokens whose continuations cover every token exactly once (perplexity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gauge.errors import ConfigError
from gauge.model.output import ModelUsage


@dataclass(frozen=True, slots=True)
class LoglikelihoodRequest:
    """Score `continuation` given `context`."""

    context: str
    continuation: str


@dataclass(frozen=True, slots=True)
class Loglikelihood:
    """The score of one continuation."""

    logprob: float
    """Summed natural-log probability of the continuation's tokens."""
    is_greedy: bool
    """Every continuation token is the argmax given everything before it."""
    tokens: int = 0
    """Continuation tokens scored (0 when unknown)."""


class ScoredBatch(list[Loglikelihood]):
    """A provider's results with the token usage its server reported.

    A provider returns a plain list, or `with_usage(results, usage)` when it knows
    the usage; the Model accounts it like a generate call's usage.
    """

    usage: ModelUsage | None = None


def with_usage(results: list[Loglikelihood], usage: ModelUsage | None) -> list[Loglikelihood]:
    """`results` carrying `usage` (prompt tokens) for the Model to account."""
    batch = ScoredBatch(results)
    batch.usage = usage
    return batch


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's convention: trailing whitespace of the context moves to the continuation."""
    stripped = context.rstrip()
    if len(stripped) == len(context):
        return context, continuation
    return stripped, context[len(stripped) :] + continuation


class Tokenizer(Protocol):
    """What scoring needs of any tokenizer (HF tokenizers, tiktoken, a server's)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        ...

    @property
    def prefix_token_id(self) -> int | None:
        """lm-eval's prefix token: bos if set, else eos; the context of an empty context."""
        ...


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) by lm-eval's `_encode_pair` rule.

    After `split_whitespace`, the whole text is encoded once and the context's
    own token count splits it, so both backends see the same ids. An empty
    context becomes `[prefix_token_id]` and the continuation is encoded alone.
    """
    if not continuation:
        raise ConfigError(
            f"loglikelihood needs a non-empty continuation (context {_short(context)!r}); "
            "drop the item or give the text to score as the continuation"
        )
    if not context:
        prefix = tokenizer.prefix_token_id
        if prefix is None:
            raise ConfigError(
                "an empty context needs a tokenizer with a bos or eos token to start from; "
                "give a context, or use a tokenizer that defines bos/eos"
            )
        return [prefix], tokenizer.encode(continuation)
    context, continuation = split_whitespace(context, continuation)
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


def rolling_windows(
    token_ids: list[int], prefix_token_id: int, max_length: int, context_len: int = 1
) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) windows that score every token exactly once.

    lm-eval's `get_rolling_token_windows` followed by `make_disjoint_window`: the
    first window predicts `token_ids[:max_length]` from `prefix_token_id`; each
    next window predicts the next at most `max_length - context_len + 1` tokens
    with up to `max_length` tokens of input, the preceding ones serving as
    context. Every window's context + continuation, minus its last token, is at
    most `max_length` tokens, which is what the model sees.
    """
    if max_length < 1:
        raise ConfigError(f"max_length must be at least 1, got {max_length}")
    if not 1 <= context_len <= max_length:
        raise ConfigError(f"context_len must be between 1 and max_length, got {context_len}")
    if not token_ids:
        return []
    windows: list[tuple[list[int], list[int]]] = []
    pred_len = max_length - context_len + 1
    predicted = 0
    first = min(max_length, len(token_ids))
    windows.append(([prefix_token_id], token_ids[:first]))
    predicted += first
    while predicted < len(token_ids):
        window_pred_len = min(len(token_ids) - predicted, pred_len)
        window_end = predicted + window_pred_len
        # lm-eval's (input, target) window: input is the max_length tokens before
        # the target's last one; the target is the window's last window_pred_len.
        inputs = token_ids[window_end - max_length - 1 : window_end - 1]
        targets = token_ids[window_end - window_pred_len : window_end]
        # make_disjoint_window: the input tokens before the target become context.
        context = inputs[: len(inputs) - (len(targets) - 1)]
        windows.append((context, targets))
        predicted += window_pred_len
    return windows


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
