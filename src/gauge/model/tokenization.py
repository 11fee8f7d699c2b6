"""Tokenizers for loglikelihood scoring: local files, or a server's /tokenize endpoint.

    load_tokenizer(spec)      what `-M tokenizer=SPEC` names:
        a directory           HF tokenizer files: tokenizer.json through the `tokenizers`
                              library (transformers' AutoTokenizer when there is none)
        *.json                a `tokenizers` tokenizer.json (bos/eos from a sibling
                              tokenizer_config.json)
        *.tiktoken            a tiktoken BPE ranks file
        an encoding name      tiktoken's `cl100k_base`, `o200k_base`, ... or a model name
                              such as `gpt-4o`, only when tiktoken already has it cached
    ServerTokenizer           vLLM's (and `gauge serve`'s) POST /tokenize and /detokenize

Every one implements `gauge.model.scoring.Tokenizer` (encode without special
tokens, decode, prefix_token_id), so `encode_pair` tokenizes the same way
whichever backend scores. Nothing here downloads: a name that is not on disk
is an error saying which file to pass.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gauge.errors import ConfigError, MissingExtra, ModelError

if TYPE_CHECKING:
    from gauge.model.providers._http import HttpClient

T = TypeVar("T")

_HINT = "pass -M tokenizer= a HF tokenizer directory, a tokenizer.json or a .tiktoken file"


class HFTokenizer:
    """A `tokenizers.Tokenizer` (tokenizer.json), with bos/eos from tokenizer_config.json."""

    def __init__(self, tokenizer: Any, bos: str | None, eos: str | None, directory: Path) -> None:
        self._tok = tokenizer
        self.directory = directory
        self.bos_token_id = _token_id(tokenizer, bos)
        self.eos_token_id = _token_id(tokenizer, eos)
        self._chat: AutoTokenizerWrapper | None = None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` (special tokens kept, as transformers' decode does)."""
        return str(self._tok.decode(ids, skip_special_tokens=False))

    @property
    def prefix_token_id(self) -> int | None:
        """bos if the tokenizer has one, else eos (lm-eval's rule)."""
        return self.bos_token_id if self.bos_token_id is not None else self.eos_token_id

    def chat_ids(self, messages: list[dict[str, str]], continue_final_message: bool) -> list[int]:
        """Token ids of `messages` rendered by the tokenizer's chat template.

        With `continue_final_message` the last (assistant) message is left open;
        otherwise the generation prompt is appended. Needs transformers, loaded
        from the same local files on first use.
        """
        if self._chat is None:
            self._chat = AutoTokenizerWrapper.load(self.directory)
        return self._chat.chat_ids(messages, continue_final_message)


class AutoTokenizerWrapper:
    """transformers' AutoTokenizer from local files (slow tokenizers, chat templates)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    @classmethod
    def load(cls, directory: Path) -> AutoTokenizerWrapper:
        """Load from `directory` without touching the network."""
        try:
            import transformers
        except ModuleNotFoundError as ex:
            raise MissingExtra(
                f"the tokenizer in {directory} needs transformers for this: pip install 'gauge[hf]'"
            ) from ex
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(directory), local_files_only=True
            )
        except (OSError, ValueError) as ex:
            raise ConfigError(
                f"cannot load a tokenizer from {directory}: {_first_line(ex)}"
            ) from ex
        return cls(tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        return str(self._tok.decode(ids))

    @property
    def prefix_token_id(self) -> int | None:
        """bos if the tokenizer has one, else eos (lm-eval's rule)."""
        bos = self._tok.bos_token_id
        return int(bos) if bos is not None else _optional_int(self._tok.eos_token_id)

    def chat_ids(self, messages: list[dict[str, str]], continue_final_message: bool) -> list[int]:
        """Token ids of `messages` rendered by the chat template (see HFTokenizer.chat_ids)."""
        if not getattr(self._tok, "chat_template", None):
            raise ConfigError(
                "the tokenizer has no chat template, so chat scoring cannot find where the "
                "answer starts; use a completions provider (openai-api-completions/...)"
            )
        rendered = self._tok.apply_chat_template(
            messages,
            tokenize=True,
            add_generation_prompt=not continue_final_message,
            continue_final_message=continue_final_message,
        )
        ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
        return [int(i) for i in ids]


class TiktokenTokenizer:
    """A tiktoken Encoding; text that looks like a special token is encoded as plain text."""

    def __init__(self, encoding: Any) -> None:
        self._enc = encoding

    @property
    def name(self) -> str:
        """The encoding's name."""
        return str(self._enc.name)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        return list(self._enc.encode(text, disallowed_special=()))

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        return str(self._enc.decode(ids))

    @property
    def prefix_token_id(self) -> int | None:
        """`<|endoftext|>` (tiktoken encodings have no bos), when the encoding has it."""
        if _ENDOFTEXT not in self._enc.special_tokens_set:
            return None
        return int(self._enc.encode_single_token(_ENDOFTEXT))


LocalTokenizer = HFTokenizer | AutoTokenizerWrapper | TiktokenTokenizer


def load_tokenizer(spec: str) -> LocalTokenizer:
    """The tokenizer `-M tokenizer=SPEC` names (see the module docstring); never downloads."""
    spec = str(spec).strip()
    if not spec:
        raise ConfigError(f"-M tokenizer= is empty; {_HINT}")
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_directory(path)
    if path.is_file():
        if path.suffix == ".tiktoken":
            return _load_tiktoken_file(path)
        if path.suffix == ".json":
            return _load_tokenizer_json(path, path.parent)
        raise ConfigError(
            f"tokenizer file {path} is neither a tokenizer.json nor a .tiktoken file; {_HINT}"
        )
    if os.sep in spec or spec.startswith(".") or spec.endswith((".json", ".tiktoken")):
        raise ConfigError(f"tokenizer path {spec} does not exist; {_HINT}")
    return _load_tiktoken_name(spec)


def _load_directory(path: Path) -> LocalTokenizer:
    if (path / "tokenizer.json").is_file():
        return _load_tokenizer_json(path / "tokenizer.json", path)
    if not any(path.glob("tokenizer*")) and not any(path.glob("*.model")):
        raise ConfigError(f"no tokenizer files in {path}; {_HINT}")
    return AutoTokenizerWrapper.load(path)


def _load_tokenizer_json(file: Path, directory: Path) -> HFTokenizer:
    try:
        import tokenizers
    except ModuleNotFoundError as ex:
        raise MissingExtra(
            f"loading {file} needs the tokenizers library: pip install 'gauge[hf]'"
        ) from ex
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(file))
    except Exception as ex:  # the library raises a bare Exception for a bad file
        raise ConfigError(f"{file} is not a valid tokenizer.json: {_first_line(ex)}") from ex
    bos, eos = _special_tokens(directory)
    return HFTokenizer(tokenizer, bos, eos, directory)


def _special_tokens(directory: Path) -> tuple[str | None, str | None]:
    """bos and eos token texts from tokenizer_config.json or special_tokens_map.json."""
    bos = eos = None
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = directory / name
        if not file.is_file():
            continue
        try:
            data = orjson.loads(file.read_bytes())
        except orjson.JSONDecodeError as ex:
            raise ConfigError(f"{file} is not valid JSON: {ex}") from ex
        if isinstance(data, dict):
            bos = _token_text(data.get("bos_token")) or bos
            eos = _token_text(data.get("eos_token")) or eos
    return bos, eos


def _token_text(value: Any) -> str | None:
    # Either a plain string or a serialized AddedToken {"content": ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _token_id(tokenizer: Any, text: str | None) -> int | None:
    if text is None:
        return None
    found = tokenizer.token_to_id(text)
    return int(found) if found is not None else None


# tiktoken's own patterns and special tokens for its public encodings: a
# .tiktoken file holds only the ranks, so a file named after one of these gets
# the matching pattern (any other file gets cl100k's).
_ENDOFTEXT = "<|endoftext|>"
_R50K_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_KNOWN_FILES: dict[str, tuple[str, dict[str, int]]] = {
    "r50k_base": (_R50K_PATTERN, {_ENDOFTEXT: 50256}),
    "p50k_base": (_R50K_PATTERN, {_ENDOFTEXT: 50256}),
    "cl100k_base": (
        _CL100K_PATTERN,
        {
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (_O200K_PATTERN, {_ENDOFTEXT: 199999, "<|endofprompt|>": 200018}),
}
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_BLOB_FILE = {
    "r50k_base": "r50k_base",
    "p50k_base": "p50k_base",
    "p50k_edit": "p50k_base",
    "cl100k_base": "cl100k_base",
    "o200k_base": "o200k_base",
    "o200k_harmony": "o200k_base",
}


def _import_tiktoken() -> Any:
    try:
        import tiktoken
    except ModuleNotFoundError as ex:
        raise MissingExtra(
            "tiktoken tokenizers need tiktoken: pip install 'gauge[tiktoken]'"
        ) from ex
    return tiktoken


def _load_tiktoken_file(path: Path) -> TiktokenTokenizer:
    tiktoken = _import_tiktoken()
    ranks = _read_ranks(path)
    pattern, specials = _KNOWN_FILES.get(path.stem, (_CL100K_PATTERN, {}))
    # A special token must not collide with a rank; drop any that would.
    used = set(ranks.values())
    specials = {k: v for k, v in specials.items() if v not in used}
    encoding = tiktoken.Encoding(
        name=path.stem, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials
    )
    return TiktokenTokenizer(encoding)


def _read_ranks(path: Path) -> dict[bytes, int]:
    """A .tiktoken file's ranks (read here: tiktoken's loader copies files into its cache)."""
    ranks = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise ConfigError(
                f"{path} line {number} is not 'base64-token rank': not a tiktoken ranks file"
            ) from None
    if not ranks:
        raise ConfigError(f"{path} has no ranks: not a tiktoken ranks file")
    return ranks


def _load_tiktoken_name(name: str) -> TiktokenTokenizer:
    tiktoken = _import_tiktoken()
    encoding_name = name
    if name not in _BLOB_FILE:
        try:
            encoding_name = tiktoken.encoding_name_for_model(name)
        except KeyError:
            raise ConfigError(
                f"tokenizer {name!r} is not a file, directory or tiktoken encoding; {_HINT}"
            ) from None
    blob = _BLOB_FILE.get(encoding_name)
    if blob is None or not _tiktoken_cached(_BLOB.format(blob)):
        raise ConfigError(
            f"tiktoken encoding {encoding_name!r} is not in tiktoken's cache and gauge does not "
            f"download; pass -M tokenizer=/path/to/{blob or encoding_name}.tiktoken"
        )
    return TiktokenTokenizer(tiktoken.get_encoding(encoding_name))


def _tiktoken_cached(url: str) -> bool:
    """Whether tiktoken would read `url` from its cache (its own lookup, no network)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        directory = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        directory = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        directory = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not directory:
        return False
    return os.path.exists(os.path.join(directory, hashlib.sha1(url.encode()).hexdigest()))


class SingleFlight:
    """Concurrent calls for one key share one in-flight call (per event loop).

    Scoring batches run concurrently and often need the same text tokenized
    (a question shared by its four choices); one request serves them all.
    """

    def __init__(self) -> None:
        self._tasks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Task[Any]]
        ] = weakref.WeakKeyDictionary()

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """The result of `call()`, shared with every concurrent caller of `key`."""
        loop = asyncio.get_running_loop()
        tasks = self._tasks.setdefault(loop, {})
        task = tasks.get(key)
        if task is None:
            task = tasks[key] = loop.create_task(_awaited(call))
            task.add_done_callback(lambda done: _forget(tasks, key, done))
        # shield: one caller's cancellation must not cancel the others' request.
        result: T = await asyncio.shield(task)
        return result


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


def _forget(
    tasks: dict[Hashable, asyncio.Task[Any]], key: Hashable, done: asyncio.Task[Any]
) -> None:
    tasks.pop(key, None)
    if not done.cancelled():
        done.exception()  # retrieved here, so a failure nobody awaits is not reported twice


class ServerTokenizer:
    """A server's POST /tokenize and /detokenize (vLLM's format; `gauge serve` speaks it).

    The endpoints sit at the server root, beside `/v1`. HTTP is async and the
    scoring protocol is not, so texts are fetched ahead with `warm()` and
    `encode` answers from what was fetched.
    """

    def __init__(self, client: HttpClient, base_url: str, model: str) -> None:
        self._client = client
        self.root = server_root(base_url)
        self.model = model
        self._encoded: dict[str, list[int]] = {}
        self._decoded: dict[tuple[int, ...], str] = {}
        self._chat: dict[bytes, int] = {}
        self._prefix: int | None = None
        self._available: bool | None = None
        self._flights = SingleFlight()

    async def available(self) -> bool:
        """Whether the server has /tokenize (asked once; a 4xx answer means no)."""
        if self._available is None:
            self._available = await self._flights.run("probe", self._probe)
        return self._available

    async def _probe(self) -> bool:
        from gauge.model.providers._http import HTTPStatusError

        try:
            probe = await self._post("tokenize", {"prompt": "", "add_special_tokens": True})
        except HTTPStatusError as ex:
            if 400 <= ex.status < 500:  # 404 (no such route), 401 (a hosted API), ...
                return False
            raise
        # The ids a server adds to an empty prompt: its bos, when it adds one.
        tokens = _token_list(probe)
        self._prefix = tokens[0] if len(tokens) == 1 else None
        if self._prefix is None:
            self._prefix = await self._info_prefix()
        return True

    async def _info_prefix(self) -> int | None:
        """bos, else eos, named by vLLM's GET /tokenizer_info (lm-eval's remote tokenizer rule).

        Many tokenizers add no bos to a prompt (Qwen has none; gauge-tiny's is not
        added), yet lm-eval starts an empty context or a perplexity window from
        bos-else-eos; a server without the endpoint leaves the prefix unknown.
        """
        from gauge.model.providers._http import HTTPStatusError

        try:
            info, _ = await self._client.get_json(f"{self.root}/tokenizer_info")
        except HTTPStatusError as ex:
            if 400 <= ex.status < 500:
                return None
            raise
        if not isinstance(info, dict):
            return None
        for key in ("bos_token", "eos_token"):
            text = info.get(key)
            if isinstance(text, dict):  # a serialised AddedToken
                text = text.get("content")
            if isinstance(text, str) and text:
                ids = _token_list(
                    await self._post("tokenize", {"prompt": text, "add_special_tokens": False})
                )
                if len(ids) == 1:
                    return ids[0]
        return None

    async def warm(self, texts: Iterable[str]) -> None:
        """Tokenize every text not seen yet, concurrently, so `encode` can answer."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._encoded))
        for start in range(0, len(todo), 64):  # bounded fan-out per round
            chunk = todo[start : start + 64]
            await asyncio.gather(
                *(self._flights.run(("text", t), self._tokenizer_for(t)) for t in chunk)
            )

    def _tokenizer_for(self, text: str) -> Callable[[], Awaitable[None]]:
        async def tokenize() -> None:
            data = await self._post("tokenize", {"prompt": text, "add_special_tokens": False})
            ids = _token_list(data)
            self._encoded[text] = ids
            self._decoded[tuple(ids)] = text

        return tokenize

    async def chat_length(
        self, messages: list[dict[str, str]], continue_final_message: bool
    ) -> int:
        """The token count of `messages` rendered by the server's chat template."""
        body: dict[str, Any] = {
            "messages": messages,
            "add_generation_prompt": not continue_final_message,
            "continue_final_message": continue_final_message,
        }
        key = orjson.dumps(body)
        if key not in self._chat:

            async def count() -> None:
                self._chat[key] = len(_token_list(await self._post("tokenize", body)))

            await self._flights.run(("chat", key), count)
        return self._chat[key]

    async def detokenize(self, ids: list[int]) -> str:
        """The server's text for `ids` (remembered, so `decode` answers it after)."""
        data = await self._post("detokenize", {"tokens": ids})
        text = data.get("prompt") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise ModelError(f"{self.root}/detokenize answered without a 'prompt' string")
        self._decoded[tuple(ids)] = text
        return text

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` fetched by `warm()` (no special tokens added)."""
        try:
            return list(self._encoded[text])
        except KeyError:
            raise ModelError(
                "ServerTokenizer.encode called for a text that was not warmed; "
                "this is a bug in the caller"
            ) from None

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` seen by `warm()` or `detokenize()`."""
        try:
            return self._decoded[tuple(ids)]
        except KeyError:
            raise ModelError(
                "ServerTokenizer.decode called for ids not tokenized or detokenized yet; "
                "this is a bug in the caller"
            ) from None

    @property
    def prefix_token_id(self) -> int | None:
        """The server's bos (what it adds to an empty prompt), when it adds one."""
        return self._prefix

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        data, _ = await self._client.post_json(f"{self.root}/{path}", {"model": self.model, **body})
        return data


def server_root(base_url: str) -> str:
    """The server root for `/tokenize`: the base URL without its trailing `/v1`."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _token_list(data: Any) -> list[int]:
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise ModelError("the server's /tokenize answered without a 'tokens' list of ids")
    return tokens


def _optional_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _first_line(ex: BaseException) -> str:
    text = str(ex).strip().splitlines()
    return text[0] if text else type(ex).__name__
