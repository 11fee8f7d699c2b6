"""A model-free engine for load tests: it answers with the prompt's words.

One word is one token. The reply is the last user message (chat) or the prompt
(completions; token ids are spelled as numbers), cut at `max_tokens` (default
16, finish "length") and at the first `stop` string. `latency` seconds pass
before the first token and `token_latency` between tokens, so streaming has a
real time to first token. Logprobs are made up (-0.1 per position).

Prompt logprobs are made up too, but deterministic, from each token's id and
position, with ranks and alternatives that agree with each other, so load tests
and fuzzing exercise the scoring routes. Its tokenizer: a word that is a number
below 100000 is that token id; any other word gets an id in 100000..999999 from
its CRC-32, the same in every server; /detokenize knows the words it has seen
(up to 50,000 of them; others come back as their id).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from gauge.serve.engines.base import (
    BASIC_FIELDS,
    Choice,
    Delta,
    Engine,
    EngineRequest,
    EngineResult,
    PromptLogprob,
    SamplingParams,
    TokenInfo,
    TokenizeRequest,
)

if TYPE_CHECKING:
    from gauge.serve.settings import Settings

DEFAULT_MAX_TOKENS = 16
FIRST_WORD_ID = 100_000
WORD_IDS = 900_000
KNOWN_WORDS = 50_000
ALTERNATIVE_ID = 1_000_000
"""Made-up alternatives in prompt logprobs have ids ALTERNATIVE_ID + rank."""


class MockEngine(Engine):
    """Echo engine with configurable latency (see module doc)."""

    name: ClassVar[str] = "mock"
    honours: ClassVar[frozenset[str]] = BASIC_FIELDS | {
        "echo",
        "include_stop_str_in_output",
        "prompt_logprobs",
    }

    def __init__(self, model_name: str, latency: float = 0.0, token_latency: float = 0.0) -> None:
        super().__init__(model_name)
        self.latency = latency
        self.token_latency = token_latency
        self.calls = 0
        self.words: dict[int, str] = {}
        """Words seen, by id (bounded: a fuzzer's random words must not grow it forever)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> MockEngine:
        """The mock engine named after the settings' model."""
        return cls(settings.served_name, settings.mock_latency, settings.mock_token_latency)

    async def load(self) -> None:
        """Nothing to load."""

    async def generate(self, request: EngineRequest) -> EngineResult:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        prompt = _prompt_words(request)
        choices = [self._choice(request, prompt) for _ in range(request.sampling.n)]
        if self.token_latency:
            await asyncio.sleep(self.token_latency * max(c.tokens for c in choices))
        scores = None
        if request.prompt_logprobs is not None:
            scores = self.prompt_scores(prompt, request.prompt_logprobs)
        return EngineResult(len(prompt), choices, prompt_logprobs=scores)

    def prompt_scores(self, words: list[str], k: int) -> list[PromptLogprob]:
        """Deterministic prompt logprobs (see module doc)."""
        out = []
        for i, word in enumerate(words):
            token_id = self._id(word)
            text = word if i == 0 else " " + word
            if i == 0:
                out.append(PromptLogprob(token_id, text, None, None))
                continue
            rank = 1 + (token_id + i) % 3
            value = -0.1 * (1 + (token_id * 31 + i) % 40)
            top = []
            for r in range(1, k + 1):
                if r == rank:
                    top.append((token_id, text, value, r))
                else:
                    top.append((ALTERNATIVE_ID + r, f"~{r}", value + 0.1 * (rank - r), r))
            out.append(PromptLogprob(token_id, text, value, rank, top))
        return out

    async def tokenize(self, request: TokenizeRequest) -> list[int]:
        if request.messages is not None:
            words = _prompt_words(EngineRequest(SamplingParams(), messages=request.messages))
        else:
            words = (request.prompt or "").split()
        return [self._id(w) for w in words]

    async def detokenize(self, ids: list[int]) -> str:
        return " ".join(self.words.get(t, str(t)) for t in ids)

    async def token_texts(self, ids: list[int]) -> list[str]:
        return [self.words.get(t, str(t)) for t in ids]

    async def tokenizer_info(self) -> dict[str, Any]:
        # One id per whitespace-separated word; no special tokens.
        return {"tokenizer_class": "MockWordTokenizer", "model_max_length": self.max_model_len}

    def _id(self, word: str) -> int:
        if word.isascii() and word.isdigit() and int(word) < FIRST_WORD_ID:
            return int(word)
        token_id = FIRST_WORD_ID + zlib.crc32(word.encode()) % WORD_IDS
        if len(self.words) < KNOWN_WORDS:
            self.words.setdefault(token_id, word)
        return token_id

    async def stream(self, request: EngineRequest) -> AsyncIterator[Delta | EngineResult]:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        prompt = _prompt_words(request)
        choices = [self._choice(request, prompt) for _ in range(request.sampling.n)]
        words = [c.text.split(" ") if c.text else [] for c in choices]
        for step in range(max(len(w) for w in words)):
            if step and self.token_latency:
                await asyncio.sleep(self.token_latency)
            for index, choice_words in enumerate(words):
                if step < len(choice_words):
                    piece = choice_words[step] if step == 0 else " " + choice_words[step]
                    lps = choices[index].logprobs
                    yield Delta(index, piece, logprobs=None if lps is None else [lps[step]])
        for index, choice in enumerate(choices):
            yield Delta(index, "", choice.finish_reason)
        yield EngineResult(len(prompt), choices)

    def _choice(self, request: EngineRequest, prompt: list[str]) -> Choice:
        s = request.sampling
        limit = s.max_tokens if s.max_tokens is not None else DEFAULT_MAX_TOKENS
        text = " ".join(prompt)
        reason = "stop"
        for stop in s.stop:
            at = text.find(stop)
            if at >= 0:
                text = text[: at + (len(stop) if s.include_stop_str_in_output else 0)]
        words = text.split(" ") if text else []
        if len(words) > limit:
            words, reason = words[:limit], "length"
        text = " ".join(words)
        logprobs = None
        if s.logprobs is not None:
            logprobs = [
                _token(w if i == 0 else " " + w, i, s.logprobs) for i, w in enumerate(words)
            ]
        if request.echo:
            echoed = request.echo_text if request.messages is not None else " ".join(prompt)
            text = echoed + text
        return Choice(text, reason, len(words), logprobs)


def _token(text: str, position: int, top: int) -> TokenInfo:
    value = -0.1 * (position + 1)
    data = list(text.encode())
    alternatives = [(text, value, data)] + [
        (f"{text}~{k}", value - k, list(f"{text}~{k}".encode())) for k in range(1, top)
    ]
    return TokenInfo(text, value, data, alternatives[:top])


def _prompt_words(request: EngineRequest) -> list[str]:
    if request.messages is not None:
        users = [m for m in request.messages if m.role == "user"] or request.messages
        return users[-1].text.split() if users else []
    if isinstance(request.prompt, list):
        return [str(t) for t in request.prompt]
    return (request.prompt or "").split()
