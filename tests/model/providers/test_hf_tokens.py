"""Exact token strings and bytes for logprobs, across tokenizer families."""

from __future__ import annotations

from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from gauge.model.providers.hf.tokens import TokenBytes  # noqa: E402

TEXT = "héllo wörld, ünïcode 日本語 text with spaces"


def byte_level_bpe() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
    )
    backend.train_from_iterator([TEXT] * 20, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def sentencepiece_like() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    specials = ["<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials)
    backend.train_from_iterator(["hello world spaces here"] * 20, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>"
    )


def test_byte_level_tokens_rebuild_the_exact_utf8() -> None:
    tokenizer = byte_level_bpe()
    lookup = TokenBytes(tokenizer)
    assert lookup.kind == "byte_level"
    text = "日本 wörld"
    ids = tokenizer(text)["input_ids"]
    pieces = [lookup(i) for i in ids]
    assert b"".join(data for _, data in pieces) == text.encode()
    # A space is a real space, not GPT-2's stand-in "Ġ".
    assert any(token.startswith(" ") for token, _ in pieces)
    assert all("Ġ" not in token for token, _ in pieces)
    # A token holding part of a character keeps its true partial bytes.
    partial = [(t, d) for t, d in pieces if "\ufffd" in t]
    assert partial and all(d != "\ufffd".encode() for _, d in partial)


def test_sentencepiece_spaces_and_byte_fallback() -> None:
    tokenizer = sentencepiece_like()
    lookup = TokenBytes(tokenizer)
    assert lookup.kind == "sentencepiece"
    text = "hello 日 world"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [lookup(i) for i in ids]
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "▁hello"
    assert pieces[0] == (" hello", b" hello")  # decode([id]) alone would drop the space
    assert b"".join(data for _, data in pieces) == (" " + text).encode()
    assert (lookup(tokenizer.convert_tokens_to_ids("<0xE6>"))) == ("\ufffd", b"\xe6")


def test_special_tokens_keep_their_literal_text() -> None:
    tokenizer = byte_level_bpe()
    lookup = TokenBytes(tokenizer)
    assert lookup(tokenizer.eos_token_id) == ("<|endoftext|>", b"<|endoftext|>")


def test_plain_tokenizers_use_decoded_text() -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<eos>": 0, "a": 1, "é": 2, " ": 3}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")
    lookup = TokenBytes(tokenizer)
    assert lookup.kind == "plain"
    assert [lookup(i) for i in (1, 2, 3)] == [("a", b"a"), ("é", b"\xc3\xa9"), (" ", b" ")]
