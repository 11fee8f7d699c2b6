"""Tokenizer loading for scoring: the bundled HF tokenizer, tiktoken files, clear errors."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from gauge.errors import ConfigError
from gauge.model.scoring import encode_pair
from gauge.model.tokenization import (
    AutoTokenizerWrapper,
    HFTokenizer,
    TiktokenTokenizer,
    load_tokenizer,
    server_root,
)

TINY = Path(__file__).parents[2] / "src" / "gauge" / "assets" / "gauge-tiny"
# gauge-tiny is one token per character: "W"=65 "h"=82 "a"=75 "t"=94 " "=10 ...
QUESTION_IDS = [65, 82, 75, 94, 10, 83, 93, 10, 27, 21, 28, 41]


def test_bundled_directory_loads_through_tokenizers() -> None:
    tokenizer = load_tokenizer(str(TINY))
    assert isinstance(tokenizer, HFTokenizer)
    assert tokenizer.encode("What is 1+2?") == QUESTION_IDS
    assert tokenizer.decode(QUESTION_IDS) == "What is 1+2?"
    assert tokenizer.bos_token_id == 1 and tokenizer.eos_token_id == 2
    assert tokenizer.prefix_token_id == 1  # bos first, as lm-eval
    # No bos is added: the encoding is the characters only.
    assert encode_pair(tokenizer, "What is 1+2? ", "3") == (QUESTION_IDS, [10, 29])


def test_tokenizer_json_alone_and_eos_fallback(tmp_path: Path) -> None:
    shutil.copy(TINY / "tokenizer.json", tmp_path / "tokenizer.json")
    bare = load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert bare.encode("ab") == [75, 76]
    assert bare.prefix_token_id is None  # nothing says which token is bos or eos
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": {"content": "<|eos|>", "special": True}})
    )
    assert load_tokenizer(str(tmp_path)).prefix_token_id == 2  # no bos: eos


def test_chat_template_from_the_same_files() -> None:
    tokenizer = load_tokenizer(str(TINY))
    assert isinstance(tokenizer, HFTokenizer)
    messages = [{"role": "user", "content": "What is 1+2?"}]
    # <|user|> question <|assistant|>, the generation prompt
    assert tokenizer.chat_ids(messages, continue_final_message=False) == [5, *QUESTION_IDS, 6]
    opened = [*messages, {"role": "assistant", "content": "3"}]
    assert tokenizer.chat_ids(opened, continue_final_message=True) == [5, *QUESTION_IDS, 6, 29]


def test_directory_without_tokenizer_json_uses_auto_tokenizer(tmp_path: Path) -> None:
    # A tokenizer_config.json naming the fast class, but the vocabulary under another name,
    # is not something the tokenizers library can read: AutoTokenizer must take it.
    shutil.copy(TINY / "tokenizer_config.json", tmp_path / "tokenizer_config.json")
    with pytest.raises(ConfigError, match="cannot load a tokenizer"):
        load_tokenizer(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no tokenizer files"):
        load_tokenizer(str(tmp_path / "empty"))


def _ranks_file(path: Path) -> Path:
    """All 256 bytes plus two merges: b"ab" (256) and b"abab" (257)."""
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab"] = 256
    ranks[b"abab"] = 257
    path.write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items())
    )
    return path


def test_tiktoken_file_with_unknown_name(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(_ranks_file(tmp_path / "tiny.tiktoken")))
    assert isinstance(tokenizer, TiktokenTokenizer)
    assert tokenizer.encode("abab") == [257]
    assert tokenizer.encode("ab ab") == [256, 32, 256]
    # Special-token text is plain text, never an error or a special id.
    assert tokenizer.encode("<|endoftext|>") == list(b"<|endoftext|>")
    assert tokenizer.decode([256, 32, 257]) == "ab abab"
    assert tokenizer.prefix_token_id is None


def test_tiktoken_file_named_after_an_encoding_gets_its_specials(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(_ranks_file(tmp_path / "cl100k_base.tiktoken")))
    assert tokenizer.prefix_token_id == 100257  # <|endoftext|>
    assert encode_pair(tokenizer, "", "abab") == ([100257], [257])


def test_tiktoken_names_are_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"not in tiktoken's cache.*cl100k_base\.tiktoken"):
        load_tokenizer("cl100k_base")
    # A model name maps to its encoding without any network.
    with pytest.raises(ConfigError, match=r"o200k_base\.tiktoken"):
        load_tokenizer("gpt-4o")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is empty"),
        ("./missing/tokenizer.json", "does not exist"),
        ("no-such-tokenizer", "not a file, directory or tiktoken encoding"),
    ],
)
def test_bad_specs_say_what_to_pass(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_tokenizer(spec)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("a\n")
    with pytest.raises(ConfigError, match=r"neither a tokenizer\.json nor a \.tiktoken"):
        load_tokenizer(str(tmp_path / "vocab.txt"))
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"not a valid tokenizer\.json"):
        load_tokenizer(str(tmp_path / "broken.json"))
    (tmp_path / "broken.tiktoken").write_text("not base64 at all\n")
    with pytest.raises(ConfigError, match="not a tiktoken ranks file"):
        load_tokenizer(str(tmp_path / "broken.tiktoken"))


def test_auto_tokenizer_wrapper_matches_the_fast_path() -> None:
    auto = AutoTokenizerWrapper.load(TINY)
    fast = load_tokenizer(str(TINY))
    text = "What is 7+85? 92"
    assert auto.encode(text) == fast.encode(text)
    assert auto.prefix_token_id == fast.prefix_token_id == 1


def test_server_root() -> None:
    assert server_root("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000"
    assert server_root("http://host/v1/") == "http://host"
    assert server_root("http://host/api") == "http://host/api"
