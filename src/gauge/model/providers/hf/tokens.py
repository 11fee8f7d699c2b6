"""The exact text and UTF-8 bytes of single tokens, for logprobs.

Decoding one token on its own is wrong for the two common tokenizer families:
byte-level BPE (GPT-2, Llama 3, Qwen) stores bytes as printable stand-in
characters ("Ġ" is a space) and may split a character across tokens, and
SentencePiece ("▁" is a space, "<0x0A>" is a raw byte) drops a leading space
when a token is decoded alone. So the bytes come from the vocabulary entry:

* byte-level: map each stand-in character back to its byte;
* SentencePiece: "▁" -> b" ", "<0xNN>" -> the byte NN, else the UTF-8 of the piece;
* anything else (character or word level): the UTF-8 of `decode([id])`.

Special tokens keep their literal text ("<|eos|>"). A token holding part of a
multi-byte character has a string with U+FFFD and its true partial bytes.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 byte values, inverted."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class TokenBytes:
    """Token id -> (text, bytes), cached per id."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.kind = _kind(tokenizer)
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._cache: dict[int, tuple[str, bytes]] = {}

    def __call__(self, token_id: int) -> tuple[str, bytes]:
        """The token's text and its exact bytes."""
        found = self._cache.get(token_id)
        if found is None:
            found = self._cache[token_id] = self._lookup(token_id)
        return found

    def _lookup(self, token_id: int) -> tuple[str, bytes]:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            piece = ""
        if token_id in self.special:
            data = piece.encode()
        elif self.kind == "byte_level":
            table = _byte_decoder()
            if all(ch in table for ch in piece):
                data = bytes(table[ch] for ch in piece)
            else:  # an added token stored as plain text
                data = piece.encode()
        elif self.kind == "sentencepiece":
            match = _BYTE_PIECE.fullmatch(piece)
            data = bytes([int(match.group(1), 16)]) if match else piece.replace("▁", " ").encode()
        else:
            data = self.tokenizer.decode([token_id]).encode()
        return data.decode("utf-8", errors="replace"), data


def _kind(tokenizer: Any) -> str:
    """byte_level, sentencepiece or plain, from the fast tokenizer's decoder."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    names = _component_names(decoder)
    if "ByteLevel" in names:
        return "byte_level"
    if names & {"Metaspace", "ByteFallback"}:
        return "sentencepiece"
    if backend is None and hasattr(tokenizer, "sp_model"):
        return "sentencepiece"
    return "plain"


def _component_names(decoder: Any) -> set[str]:
    if decoder is None:
        return set()
    names = {type(decoder).__name__}
    # A Sequence decoder lists its parts in its JSON form.
    text = str(getattr(decoder, "__getstate__", lambda: b"")() or b"")
    for name in ("ByteLevel", "Metaspace", "ByteFallback"):
        if name in text:
            names.add(name)
    return names
