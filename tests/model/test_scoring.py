"""The scoring helpers: lm-eval's whitespace rule, pair encoding and rolling windows."""

from __future__ import annotations

import re

import pytest

from gauge.errors import ConfigError
from gauge.model.output import ModelUsage
from gauge.model.scoring import (
    Loglikelihood,
    ScoredBatch,
    encode_pair,
    rolling_windows,
    split_whitespace,
    with_usage,
)


class WordTokenizer:
    """Whitespace-aware tokenizer: a word with its leading spaces is one token.

    Like BPE tokenizers, " 5" is one token (id of the text), so the seam between
    context and continuation matters.
    """

    def __init__(self, prefix: int | None = 0) -> None:
        self.vocab: dict[str, int] = {}
        self.prefix = prefix

    def encode(self, text: str) -> list[int]:
        pieces = re.findall(r"\s*\S+|\s+$", text)
        return [self.vocab.setdefault(p, len(self.vocab) + 100) for p in pieces]

    def decode(self, ids: list[int]) -> str:
        names = {v: k for k, v in self.vocab.items()}
        return "".join(names[i] for i in ids)

    @property
    def prefix_token_id(self) -> int | None:
        return self.prefix


def test_split_whitespace_moves_trailing_space_to_continuation() -> None:
    assert split_whitespace("Q: 2+3= ", "5") == ("Q: 2+3=", " 5")
    assert split_whitespace("Answer:\n\n", "yes") == ("Answer:", "\n\nyes")
    assert split_whitespace("no space", " x") == ("no space", " x")
    assert split_whitespace("", "x") == ("", "x")


def test_encode_pair_scores_the_continuation_as_the_whole_text_tokenizes() -> None:
    tok = WordTokenizer()
    ctx, cont = encode_pair(tok, "The answer is ", "five")
    # The space moved to the continuation, so " five" is one token, as in the whole text.
    assert tok.decode(ctx) == "The answer is"
    assert tok.decode(cont) == " five"
    assert ctx + cont == tok.encode("The answer is five")


def test_encode_pair_empty_context_starts_from_the_prefix_token() -> None:
    tok = WordTokenizer(prefix=7)
    ctx, cont = encode_pair(tok, "", "hello world")
    assert ctx == [7]
    assert tok.decode(cont) == "hello world"


def test_encode_pair_rejects_what_cannot_be_scored() -> None:
    with pytest.raises(ConfigError, match="non-empty continuation"):
        encode_pair(WordTokenizer(), "context", "")
    with pytest.raises(ConfigError, match="bos or eos"):
        encode_pair(WordTokenizer(prefix=None), "", "text")


def test_rolling_windows_matches_lm_eval_docstring_example() -> None:
    # lm-eval's get_rolling_token_windows example (tokens 0..9, prefix -1,
    # max_seq_len 4, context_len 2), after make_disjoint_window.
    windows = rolling_windows(list(range(10)), -1, 4, context_len=2)
    assert windows == [([-1], [0, 1, 2, 3]), ([2, 3], [4, 5, 6]), ([5, 6], [7, 8, 9])]


def test_rolling_windows_default_context_len_one() -> None:
    windows = rolling_windows(list(range(10)), -1, 4)
    # Each later window predicts max_length tokens with max_length of input.
    assert windows == [
        ([-1], [0, 1, 2, 3]),
        ([3], [4, 5, 6, 7]),
        ([5, 6, 7], [8, 9]),
    ]


@pytest.mark.parametrize("length", [1, 3, 4, 5, 17, 64])
@pytest.mark.parametrize(("max_length", "context_len"), [(4, 1), (4, 4), (8, 3), (1, 1)])
def test_rolling_windows_cover_every_token_once(
    length: int, max_length: int, context_len: int
) -> None:
    tokens = list(range(1000, 1000 + length))
    windows = rolling_windows(tokens, -1, max_length, context_len)
    covered = [t for _, continuation in windows for t in continuation]
    assert covered == tokens
    for context, continuation in windows:
        # The model reads context + continuation minus the last token.
        assert 1 <= len(context) + len(continuation) - 1 <= max_length
        if context != [-1]:
            # A context is the tokens right before the continuation.
            start = tokens.index(continuation[0])
            assert tokens[start - len(context) : start] == context


def test_rolling_windows_edge_cases() -> None:
    assert rolling_windows([], 0, 4) == []
    with pytest.raises(ConfigError, match="max_length"):
        rolling_windows([1], 0, 0)
    with pytest.raises(ConfigError, match="context_len"):
        rolling_windows([1], 0, 4, context_len=5)


def test_with_usage_is_still_a_list_of_results() -> None:
    results = [Loglikelihood(-1.5, True, 2)]
    batch = with_usage(results, ModelUsage(input_tokens=3, total_tokens=3))
    assert batch == results
    assert isinstance(batch, ScoredBatch)
    assert batch.usage is not None and batch.usage.input_tokens == 3
