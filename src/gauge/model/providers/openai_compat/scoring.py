"""Loglikelihood over OpenAI-compatible endpoints: the request and response translation.

    CompletionsScoringAPI   /completions with echo: lm-eval's local-completions.
                            `echo: true, logprobs: 1, max_tokens: 0, temperature: 0`;
                            the prompt is the token ids of `encode_pair(context,
                            continuation)` when a tokenizer is known (`-M tokenizer=`,
                            or the server's /tokenize), else the text, and the
                            continuation's tokens are found by their text_offset.
                            `-M batch_size=N` prompts travel in one request.
    PromptLogprobsAPI       /chat/completions with vLLM's `prompt_logprobs` extension:
                            messages [user: context, assistant: continuation] with
                            `continue_final_message`; the continuation's tokens are
                            those past the context-only prompt, whose length comes
                            from the server's /tokenize (messages form) or a local
                            tokenizer's chat template. `-M score_endpoint=completions`
                            scores through the same server's /completions instead.

Model args (not sent to the server): `tokenizer`, `batch_size` (default 1, as in
lm-eval), `max_length` (default 2048: prompts keep their last max_length tokens,
as lm-eval's API models do), `prefix_token_id` (the token an empty context or a
perplexity window starts from; default the tokenizer's bos, else eos),
`score_endpoint` (chat providers: `chat` by default, or `completions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gauge.errors import ConfigError, UnsupportedFeature
from gauge.model.config import GenerateConfig
from gauge.model.output import ModelUsage
from gauge.model.providers.openai_compat.chat import OpenAIChatAPI
from gauge.model.providers.openai_compat.logprob_scores import (
    NEEDS_IDS,
    Prefixed,
    add_usage,
    check_continuation,
    echo_choices,
    echo_logprobs,
    pair_texts,
    prompt_logprobs_score,
    score_positions,
    text_span,
    truncate,
)
from gauge.model.providers.openai_compat.response import MalformedResponse, usage
from gauge.model.scoring import (
    Loglikelihood,
    LoglikelihoodRequest,
    Tokenizer,
    encode_pair,
    rolling_windows,
    split_whitespace,
    with_usage,
)
from gauge.model.tokenization import (
    AutoTokenizerWrapper,
    HFTokenizer,
    LocalTokenizer,
    ServerTokenizer,
    load_tokenizer,
)

SCORING_ARGS = ("tokenizer", "batch_size", "max_length", "prefix_token_id", "score_endpoint")
"""Model args the scoring code consumes (never sent in a request body)."""

DEFAULT_MAX_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class ScoringArgs:
    """The scoring model args, validated."""

    tokenizer: str | Tokenizer | None = None
    """A spec for `load_tokenizer`, or a tokenizer object given from Python."""
    batch_size: int = 1
    max_length: int = DEFAULT_MAX_LENGTH
    prefix_token_id: int | None = None
    endpoint: str | None = None
    """`-M score_endpoint=`: `chat` (prompt_logprobs) or `completions` (echo)."""

    @classmethod
    def parse(cls, model_args: dict[str, Any]) -> ScoringArgs:
        """Read and check `-M tokenizer= batch_size= max_length= prefix_token_id=`."""
        spec = model_args.get("tokenizer")
        if isinstance(spec, str | Path):
            spec = str(spec) or None
        elif spec is not None and not all(
            hasattr(spec, a) for a in ("encode", "decode", "prefix_token_id")
        ):
            raise ConfigError(
                f"-M tokenizer= must be a path or name, or an object with encode, decode and "
                f"prefix_token_id; got {type(spec).__name__}"
            )
        prefix = model_args.get("prefix_token_id")
        endpoint = model_args.get("score_endpoint")
        if endpoint is not None and endpoint not in ("chat", "completions"):
            raise ConfigError(f"-M score_endpoint= must be chat or completions, got {endpoint!r}")
        return cls(
            tokenizer=spec,
            batch_size=_int_arg(model_args, "batch_size", 1, minimum=1),
            max_length=_int_arg(model_args, "max_length", DEFAULT_MAX_LENGTH, minimum=2),
            prefix_token_id=None if prefix is None else _int_arg(model_args, "prefix_token_id", 0),
            endpoint=endpoint,
        )


def _int_arg(args: dict[str, Any], name: str, default: int, minimum: int = 0) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"-M {name}= must be an integer, got {value!r}") from None
    if number < minimum or isinstance(value, bool):
        raise ConfigError(f"-M {name}= must be an integer >= {minimum}, got {value!r}")
    return number


class _ScoringBase(OpenAIChatAPI):
    """Tokenizer resolution shared by the completions and chat scorers."""

    score_endpoints: ClassVar[tuple[str, ...]] = ("completions",)
    """The endpoints this provider can score through, the default first."""
    model_arg_names: ClassVar[frozenset[str]] = OpenAIChatAPI.model_arg_names | frozenset(
        SCORING_ARGS
    )

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        for name in SCORING_ARGS:
            self.body_args.pop(name, None)
        self.scoring = ScoringArgs.parse(model_args)
        self.score_endpoint = self.scoring.endpoint or self.score_endpoints[0]
        if self.score_endpoint not in self.score_endpoints:
            raise ConfigError(
                f"provider {self.name!r} scores through its {self.score_endpoints[0]} endpoint "
                f"only; remove -M score_endpoint={self.score_endpoint}"
            )
        # Loaded now, so a bad path fails at construction, not mid-eval.
        spec = self.scoring.tokenizer
        self.local_tokenizer: LocalTokenizer | Tokenizer | None = (
            load_tokenizer(spec) if isinstance(spec, str) else spec
        )
        self._server: ServerTokenizer | None = None

    async def server_tokenizer(self) -> ServerTokenizer | None:
        """The server's /tokenize, when there is no local tokenizer and the server has one."""
        if self._server is None:
            self._server = ServerTokenizer(self.client, self.base_url or "", self.wire_model())
        return self._server if await self._server.available() else None

    async def tokenizer(self) -> Tokenizer | None:
        """The local tokenizer, else the server's, else None."""
        if self.local_tokenizer is not None:
            return self.local_tokenizer
        return await self.server_tokenizer()

    def prefix_token_id(self, tokenizer: Tokenizer) -> int:
        """`-M prefix_token_id=`, else the tokenizer's bos/eos; an error when neither exists."""
        prefix = self.scoring.prefix_token_id
        if prefix is None:
            prefix = tokenizer.prefix_token_id
        if prefix is None:
            raise ConfigError(
                f"provider {self.name!r} needs a prefix token (bos/eos) to score from an empty "
                "context or a text's first token; the tokenizer has none: pass "
                "-M prefix_token_id=N or a -M tokenizer= that defines bos or eos"
            )
        return prefix

    def scoring_body(self, body: dict[str, Any], config: GenerateConfig) -> dict[str, Any]:
        """`body` with the user's model args under it and config.extra_body over it."""
        merged = {**self.body_args, **body}
        if config.extra_body:
            merged.update(config.extra_body)
        return merged

    async def post(
        self, body: dict[str, Any], config: GenerateConfig, path: str | None = None
    ) -> dict[str, Any]:
        """POST to `path` (default: this provider's endpoint); the answer must be an object."""
        data, _ = await self.client.post_json(
            path or self.endpoint(), body, config.extra_headers, self.query_params()
        )
        if not isinstance(data, dict):
            raise MalformedResponse(f"expected a JSON object, got {type(data).__name__}")
        return data


class CompletionsScoringAPI(_ScoringBase):
    """Loglikelihood through `/completions` with echo and logprobs, no new tokens."""

    supports_loglikelihood = True

    def score_batch_size(self) -> int:
        return self.scoring.batch_size

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        tokenizer = await self.tokenizer()
        if tokenizer is None:
            return await self._score_texts(requests, config)
        if isinstance(tokenizer, ServerTokenizer):
            await tokenizer.warm(pair_texts(requests))
        prompts: list[list[int]] = []
        spans: list[tuple[int, int]] = []
        for request in requests:
            context, continuation = self._encode(tokenizer, request)
            prompt, start = truncate(context, continuation, self.scoring.max_length)
            prompts.append(prompt)
            spans.append((start, len(prompt)))
        return await self._score_ids(prompts, spans, config)

    async def loglikelihood_rolling(
        self, texts: list[str], config: GenerateConfig
    ) -> list[Loglikelihood]:
        tokenizer = await self.tokenizer()
        if tokenizer is None:
            return [await self._rolling_text(text, config) for text in texts]
        if isinstance(tokenizer, ServerTokenizer):
            await tokenizer.warm(texts)
        results = []
        used: ModelUsage | None = None
        for text in texts:
            ids = tokenizer.encode(text)
            if not ids:
                results.append(Loglikelihood(0.0, True, 0))
                continue
            # lm-eval's API models: windows of max_length - 1 predicted tokens plus
            # one of context, so each prompt holds at most max_length tokens.
            windows = rolling_windows(
                ids, self.prefix_token_id(tokenizer), self.scoring.max_length - 1
            )
            prompts = [context + continuation for context, continuation in windows]
            spans = [(len(context), len(context) + len(cont)) for context, cont in windows]
            scores = await self._score_ids(prompts, spans, config)
            used = add_usage(used, getattr(scores, "usage", None))
            results.append(
                Loglikelihood(
                    sum(s.logprob for s in scores), all(s.is_greedy for s in scores), len(ids)
                )
            )
        return with_usage(results, used)

    def _encode(
        self, tokenizer: Tokenizer, request: LoglikelihoodRequest
    ) -> tuple[list[int], list[int]]:
        if not request.context:
            tokenizer = Prefixed(tokenizer, self.prefix_token_id(tokenizer))
        return encode_pair(tokenizer, request.context, request.continuation)

    async def _score_ids(
        self, prompts: list[list[int]], spans: list[tuple[int, int]], config: GenerateConfig
    ) -> list[Loglikelihood]:
        """Score token-id prompts; `spans[i]` = (first, end) positions of the continuation."""

        def score(logprobs: dict[str, Any], i: int) -> Loglikelihood:
            return score_positions(logprobs, *spans[i])

        return await self._echo(prompts, score, config)

    async def _echo(
        self,
        prompts: Sequence[list[int] | str],
        score: Callable[[dict[str, Any], int], Loglikelihood],
        config: GenerateConfig,
    ) -> list[Loglikelihood]:
        """Echo `prompts`, `batch_size` per request; `score(logprobs, i)` reads prompt i."""
        results: list[Loglikelihood] = []
        used: ModelUsage | None = None
        size = self.scoring.batch_size
        for start in range(0, len(prompts), size):
            batch = prompts[start : start + size]
            data = await self.post(self._echo_body(batch, config), config, self.echo_path())
            for offset, choice in enumerate(echo_choices(data, len(batch))):
                results.append(score(echo_logprobs(choice, self.base_url), start + offset))
            used = add_usage(used, usage(data.get("usage")))
        return with_usage(results, used)

    async def _score_texts(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        """No tokenizer: send ctx+cont as text and find the continuation by text_offset."""
        pairs = []
        for request in requests:
            check_continuation(request)
            if not request.context:
                raise ConfigError(
                    f"provider {self.name!r} needs token ids to score from an empty context: "
                    + NEEDS_IDS
                )
            pairs.append(split_whitespace(request.context, request.continuation))

        def score(logprobs: dict[str, Any], i: int) -> Loglikelihood:
            context, continuation = pairs[i]
            return score_positions(logprobs, *text_span(logprobs, context, context + continuation))

        return await self._echo([c + t for c, t in pairs], score, config)

    async def _rolling_text(self, text: str, config: GenerateConfig) -> Loglikelihood:
        """No tokenizer: the whole text in one echo request (the server's bos starts it)."""
        if not text:
            return Loglikelihood(0.0, True, 0)
        data = await self.post(self._echo_body([text], config), config, self.echo_path())
        logprobs = echo_logprobs(echo_choices(data, 1)[0], self.base_url)
        first, end = text_span(logprobs, "", text)
        values = logprobs["token_logprobs"]
        if first >= end or values[first] is None:
            raise ConfigError(
                f"the server at {self.base_url} adds no bos token, so a text's first token "
                f"cannot be scored without a prefix token: {NEEDS_IDS}"
            )
        return score_positions(logprobs, first, end)

    def echo_path(self) -> str:
        """Where echo requests go: this provider's /completions endpoint."""
        return self.endpoint()

    def _echo_body(
        self, prompts: Sequence[list[int] | str], config: GenerateConfig
    ) -> dict[str, Any]:
        body = {
            "model": self.wire_model(),
            "prompt": list(prompts),
            "echo": True,
            "logprobs": 1,
            "max_tokens": 0,
            "temperature": 0.0,
        }
        return self.scoring_body(body, config)


class PromptLogprobsAPI(CompletionsScoringAPI):
    """Loglikelihood through `/chat/completions` with vLLM's `prompt_logprobs`.

    `-M score_endpoint=completions` scores through the same server's
    `/completions` instead (raw text as hf/ and lm-eval score it, batching and
    rolling loglikelihood included).
    """

    score_endpoints = ("chat", "completions")

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self._context_lengths: dict[str, int] = {}

    def score_batch_size(self) -> int:
        # The chat endpoint takes one conversation per request.
        return super().score_batch_size() if self.score_endpoint == "completions" else 1

    def echo_path(self) -> str:
        return "completions"

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        if self.score_endpoint == "completions":
            return await super().loglikelihood(requests, config)
        results: list[Loglikelihood] = []
        used: ModelUsage | None = None
        for request in requests:
            check_continuation(request)
            first = await self._context_length(request.context)
            data = await self.post(self._chat_body(request, config), config)
            results.append(prompt_logprobs_score(data, first, self.base_url))
            used = add_usage(used, usage(data.get("usage")))
        return with_usage(results, used)

    async def loglikelihood_rolling(
        self, texts: list[str], config: GenerateConfig
    ) -> list[Loglikelihood]:
        if self.score_endpoint == "completions":
            return await super().loglikelihood_rolling(texts, config)
        raise UnsupportedFeature(
            f"provider {self.name!r} scores chat turns; for perplexity score through the "
            "server's completions endpoint: -M score_endpoint=completions"
        )

    async def _context_length(self, context: str) -> int:
        """Tokens of the context-only prompt (user turn + the assistant's opening)."""
        known = self._context_lengths.get(context)
        if known is not None:
            return known
        messages = [{"role": "user", "content": context}]
        local = self.local_tokenizer
        if isinstance(local, HFTokenizer | AutoTokenizerWrapper):
            length = len(local.chat_ids(messages, continue_final_message=False))
        elif local is not None:
            raise ConfigError(
                f"chat scoring needs a tokenizer with a chat template; a {type(local).__name__} "
                "has none: pass a HF tokenizer directory, or drop -M tokenizer= to use the "
                "server's /tokenize"
            )
        elif (server := await self.server_tokenizer()) is not None:
            length = await server.chat_length(messages, continue_final_message=False)
        else:
            raise ConfigError(
                f"provider {self.name!r} needs to know where the answer starts in the chat "
                "prompt: pass -M tokenizer=PATH (a HF tokenizer directory with a chat "
                "template) or use a server with /tokenize (vLLM, gauge serve)"
            )
        self._context_lengths[context] = length
        return length

    def _chat_body(self, request: LoglikelihoodRequest, config: GenerateConfig) -> dict[str, Any]:
        body = {
            "model": self.wire_model(),
            "messages": [
                {"role": "user", "content": request.context},
                {"role": "assistant", "content": request.continuation},
            ],
            "continue_final_message": True,
            "add_generation_prompt": False,
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 1,
        }
        return self.scoring_body(body, config)
