"""Token ids -> text, with vLLM's `skip_special_tokens` and `spaces_between_special_tokens`.

Skipping special tokens (the default) is the tokenizer's own decode. Keeping
them follows transformers' slow tokenizers (and vLLM's detokenizer for
tokenizers with added tokens): the text is cut at each added or special token,
each piece is decoded alone, the token's own text stands for itself, and the
pieces are joined with a space when `spaces_between_special_tokens` is true
(the default), with nothing when it is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class DecodeFlags(Protocol):
    """The two decoding settings (Sampling and the server's SamplingParams both carry them)."""

    @property
    def skip_special_tokens(self) -> bool: ...

    @property
    def spaces_between_special_tokens(self) -> bool: ...


def decode_ids(tokenizer: Any, ids: Sequence[int], skip: bool = True, spaces: bool = True) -> str:
    """The text of `ids` under the two flags (see the module doc)."""
    if skip:
        text: str = tokenizer.decode(list(ids), skip_special_tokens=True)
        return text
    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
    parts: list[str] = []
    run: list[int] = []
    for token in ids:
        if token in added:
            if run:
                parts.append(tokenizer.decode(run, skip_special_tokens=False))
                run = []
            parts.append(added[token])
        else:
            run.append(token)
    if run:
        parts.append(tokenizer.decode(run, skip_special_tokens=False))
    return (" " if spaces else "").join(parts)


def decode_rows(tokenizer: Any, rows: list[list[int]], flags: Sequence[DecodeFlags]) -> list[str]:
    """Decode many rows: one batch call for the default flags, one call per other row."""
    texts: list[str] = tokenizer.batch_decode(rows, skip_special_tokens=True)
    for i, (ids, f) in enumerate(zip(rows, flags, strict=True)):
        if not f.skip_special_tokens:
            texts[i] = decode_ids(tokenizer, ids, False, f.spaces_between_special_tokens)
    return texts
