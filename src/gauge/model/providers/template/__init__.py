"""TemplateAPI: plug a custom HTTP API in by writing its payload and parsers (lm-eval style).

    batcher.py   coalesces concurrent requests into calls of up to `batch_size`
    payload.py   GenerateConfig -> lm-eval gen_kwargs; messages -> dicts or prompts
    outputs.py   response bodies -> what the parsers get; their results -> Loglikelihood

A subclass writes what lm-evaluation-harness's `TemplateAPI` asks for, with the
same names and meanings:

    create_payload(messages, *, generate=True, gen_kwargs=None, seed=None, **kwargs) -> dict
    parse_generations(outputs) -> list[str]                      (static or instance method)
    parse_logprobs(outputs, tokens=None, ctxlens=None) -> list[tuple[float, bool]]
    header (property or method) -> dict; api_key (property) -> str     (optional)

`outputs` is a list of the call's response bodies (one), as lm-eval's parsers
take it; `outputs["key"]` reads that body too. `self.model` is the model's name
and `self.api_key` the key as text (its repr is stars), so the header lm-eval's
docs show, `{"Authorization": f"Bearer {self.api_key}"}`, authenticates.

and inherits the rest from gauge: one pooled HTTP session, HTTP errors classified
for the pipeline's retries and rate control, the cache, `timeout`, `max_retries`,
`max_gen_toks` (the default max_tokens), a tokenizer (`-M tokenizer=`), batching
(`batch_size` requests per call) and `num_concurrent` calls in flight.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import inspect
import math
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar, Literal

from gauge.errors import ConfigError, ModelError, UnsupportedFeature, one_line
from gauge.model.api import ModelAPI, RetryDecision, Secret
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.providers._http import HttpClient, classify_http
from gauge.model.providers.openai_compat.completions import completion_prompt
from gauge.model.providers.template.batcher import Batcher
from gauge.model.providers.template.outputs import KeyText, as_loglikelihood, as_responses
from gauge.model.providers.template.payload import GEN_FIELDS, chat_dicts, gen_kwargs, group_key
from gauge.model.scoring import (
    Loglikelihood,
    LoglikelihoodRequest,
    Tokenizer,
    encode_pair,
    rolling_windows,
    split_whitespace,
)
from gauge.model.tools import ToolChoice, ToolInfo

__all__ = ["TemplateAPI"]

DEFAULT_MAX_GEN_TOKS = 256
"""lm-eval's default `max_gen_toks`."""
DEFAULT_MAX_LENGTH = 2048
"""Most tokens sent per scoring input (the server's context; lm-eval's default)."""
DEFAULT_CONCURRENT = 10
"""HTTP calls in flight when neither num_concurrent nor max_connections is given."""
UNLIMITED = 1 << 30

Format = Literal["chat", "text"]


class TemplateAPI(ModelAPI):
    """Base class for a custom HTTP API: write `create_payload` and the parsers.

    `messages` passed to `create_payload` for generation: with `message_format =
    "chat"` (the default) one conversation as OpenAI-style dicts when `batch_size`
    is 1, else a list of conversations; with `"text"` a list of prompt strings
    (the messages' texts joined by blank lines). For scoring (`generate=False`): a
    list of token-id lists (context + continuation) when a tokenizer is known,
    else a list of strings, plus `pairs=[(context, continuation), ...]`.
    """

    honours: ClassVar[frozenset[str]] = GEN_FIELDS
    supports_loglikelihood: ClassVar[bool] = True
    """Set from the class: True when it defines `parse_logprobs`."""
    message_format: ClassVar[Format] = "chat"
    generate_path: ClassVar[str] = ""
    """POST target for generation, relative to base_url ("" posts to base_url itself)."""
    loglikelihood_path: ClassVar[str] = ""
    """POST target for scoring, relative to base_url ("" posts to base_url itself)."""
    default_batch_size: ClassVar[int] = 1
    """Requests per HTTP call when `-M batch_size=` is not given."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "supports_loglikelihood" not in cls.__dict__:
            cls.supports_loglikelihood = _defines(cls, "parse_logprobs")
        # lm-eval subclasses define `api_key` as a (cached) property; let the base
        # class store the key it was given under it without clobbering the getter.
        prop = cls.__dict__.get("api_key")
        if isinstance(prop, functools.cached_property):
            prop = property(prop.func)
        if isinstance(prop, property) and prop.fset is None:
            cls.api_key = prop.setter(_store_key)  # type: ignore[assignment]

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        batch_size: int | None = None,
        num_concurrent: int | None = None,
        tokenizer: str | Tokenizer | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        proxy: str | None = None,
        **model_args: Any,
    ) -> None:
        if model_args:
            raise ConfigError(
                f"provider {self.name or type(self).__name__!r} does not take model args "
                f"{', '.join(sorted(model_args))}; known: batch_size, num_concurrent, "
                "tokenizer, max_length, max_gen_toks, proxy"
            )
        if not _defines(type(self), "create_payload") and not _defines(
            type(self), "_create_payload"
        ):
            raise TypeError(f"{type(self).__name__} must define create_payload")
        super().__init__(model_name, base_url, api_key, config)
        self.batch_size = _positive(batch_size or self.default_batch_size, "batch_size")
        self.num_concurrent = (
            None if num_concurrent is None else _positive(num_concurrent, "num_concurrent")
        )
        self.max_length = _positive(max_length, "max_length")
        if self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2, got {max_length}")
        self.max_gen_toks = _positive(max_gen_toks, "max_gen_toks")
        self.tokenizer: Tokenizer | None = _tokenizer(tokenizer)
        self.proxy = proxy
        self._client: HttpClient | None = None
        self._batcher: Batcher[Any, Any] = Batcher(self._send, type(self).__name__)

    # -- lm-eval's names ---------------------------------------------------------------------

    @property  # type: ignore[override]
    def api_key(self) -> KeyText:
        """The key as text ("" when none): lm-eval's `self.api_key`; its repr is stars."""
        given = self.__dict__.get("_given_api_key")
        return KeyText(given.get() if isinstance(given, Secret) else (given or ""))

    @api_key.setter
    def api_key(self, value: Secret | str | None) -> None:
        _store_key(self, value)

    @property
    def model(self) -> str:
        """The model's name, sent as `"model"` (lm-eval's `self.model`)."""
        return self.model_name

    @model.setter
    def model(self, value: str) -> None:
        self.model_name = value

    @property
    def _max_gen_toks(self) -> int:
        """lm-eval's name for `max_gen_toks` (its own payload methods read it)."""
        return self.max_gen_toks

    # -- what a subclass writes --------------------------------------------------------------

    def create_payload(
        self,
        messages: Any,
        *,
        generate: bool = True,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The JSON body for one call carrying `messages` (override this, or `_create_payload`)."""
        return self._create_payload(
            messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed, **kwargs
        )

    def _create_payload(
        self,
        messages: Any,
        *,
        generate: bool = True,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """lm-eval's name for `create_payload`; override either one."""
        raise TypeError(f"{type(self).__name__} must define create_payload")

    def parse_generations(self, outputs: Any) -> list[str]:
        """One completion per request of the call, in order, from the parsed response body."""
        raise UnsupportedFeature(
            f"provider {self.name!r} cannot generate: its class defines no parse_generations"
        )

    def parse_logprobs(
        self,
        outputs: Any,
        tokens: list[list[int]] | None = None,
        ctxlens: list[int] | None = None,
    ) -> list[tuple[float, bool]]:
        """(summed continuation logprob, is_greedy) per request of the call, in order.

        `tokens` are the token-id inputs sent and `ctxlens` their context lengths
        when a tokenizer is known (lm-eval's meaning); both are None otherwise.
        """
        raise UnsupportedFeature(
            f"provider {self.name!r} cannot score loglikelihoods: its class defines no "
            "parse_logprobs"
        )

    @property
    def header(self) -> dict[str, str]:
        """HTTP headers for every call (default: a bearer token when there is a key)."""
        key = self.api_key_value()
        return {"Authorization": f"Bearer {key}"} if key else {}

    # -- gauge's side ------------------------------------------------------------------------

    def api_key_value(self) -> str:
        """The key as text (from the `api_key` property of a subclass, or the one given)."""
        key: Any = self.api_key
        if isinstance(key, Secret):
            return key.get()
        return key or ""

    def max_tokens(self) -> int | None:
        return self.max_gen_toks

    def max_connections(self) -> int:
        # Requests in flight: enough to fill every concurrent call with a full batch.
        return (self.num_concurrent or DEFAULT_CONCURRENT) * self.batch_size

    def score_batch_size(self) -> int:
        return self.batch_size

    def connection_key(self) -> str:
        key = self.api_key_value()
        digest = hashlib.sha256(key.encode()).hexdigest()[:12] if key else "-"
        return f"{self.name}|{self.base_url or ''}|{digest}|{self.model_name}"

    def classify_error(self, ex: BaseException) -> RetryDecision:
        return classify_http(ex) or super().classify_error(ex)

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise ConfigError(f"provider {self.name!r} takes no tools; remove them from the task")
        kwargs = gen_kwargs(config, self.max_gen_toks)
        group = ("generate", group_key(kwargs, config.seed, config))
        if self.message_format == "chat":
            message: Any = chat_dicts(input, self.name)
        else:
            message = completion_prompt(input)
        job = (message, kwargs, config)
        text = await self._batcher.submit(job, group, self.batch_size, self._slots(config))
        return ModelOutput.from_content(self.model_name, text, stop_reason="unknown")

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        self._check_scoring()
        inputs: list[Any] = []
        ctxlens: list[int] = []
        pairs: list[tuple[str, str]] = []
        for request in requests:
            context, continuation = split_whitespace(request.context, request.continuation)
            pairs.append((context, continuation))
            if self.tokenizer is None:
                inputs.append(context + continuation)
                continue
            ctx_ids, cont_ids = encode_pair(self.tokenizer, request.context, request.continuation)
            whole = (ctx_ids + cont_ids)[-self.max_length :]
            inputs.append(whole)
            ctxlens.append(max(0, len(whole) - len(cont_ids)))
        return await self._score_chunk(inputs, ctxlens, pairs, config)

    async def loglikelihood_rolling(
        self, texts: list[str], config: GenerateConfig
    ) -> list[Loglikelihood]:
        self._check_scoring()
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise UnsupportedFeature(
                f"provider {self.name!r} needs a tokenizer for loglikelihood_rolling (it cuts "
                "texts into token windows): pass -M tokenizer=PATH"
            )
        prefix = tokenizer.prefix_token_id
        if prefix is None:
            raise ConfigError(
                "loglikelihood_rolling needs a tokenizer with a bos or eos token to start from"
            )
        owners: list[int] = []
        inputs: list[Any] = []
        ctxlens: list[int] = []
        pairs: list[tuple[str, str]] = []
        for index, text in enumerate(texts):
            ids = tokenizer.encode(text)
            # Windows of at most max_length tokens in all (rolling_windows counts the
            # inputs a model sees, which is one fewer than the tokens echoed back).
            for context, targets in rolling_windows(ids, prefix, self.max_length - 1):
                owners.append(index)
                inputs.append(context + targets)
                ctxlens.append(len(context))
                pairs.append((tokenizer.decode(context), tokenizer.decode(targets)))
        size = self.batch_size
        chunks = await asyncio.gather(
            *(
                self._score_chunk(
                    inputs[i : i + size], ctxlens[i : i + size], pairs[i : i + size], config
                )
                for i in range(0, len(inputs), size)
            )
        )
        logprob = [0.0] * len(texts)
        greedy = [True] * len(texts)
        count = [0] * len(texts)
        for owner, score in zip(owners, (s for chunk in chunks for s in chunk), strict=True):
            logprob[owner] += score.logprob
            greedy[owner] = greedy[owner] and score.is_greedy
            count[owner] += score.tokens
        return [Loglikelihood(lp, g, n) for lp, g, n in zip(logprob, greedy, count, strict=True)]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _check_scoring(self) -> None:
        if not self.supports_loglikelihood:
            raise UnsupportedFeature(
                f"provider {self.name!r} cannot score loglikelihoods: its class defines no "
                "parse_logprobs"
            )

    def _slots(self, config: GenerateConfig) -> int:
        """HTTP calls in flight: num_concurrent, else the request limit over batch_size."""
        if self.num_concurrent is not None:
            return self.num_concurrent
        if config.max_connections is not None:
            return max(1, math.ceil(config.max_connections / self.batch_size))
        if self.batch_size == 1:
            # Nothing to coalesce: the pipeline's (adaptive) request limit is the only one.
            return UNLIMITED
        return DEFAULT_CONCURRENT

    async def _score_chunk(
        self,
        inputs: list[Any],
        ctxlens: list[int],
        pairs: list[tuple[str, str]],
        config: GenerateConfig,
    ) -> list[Loglikelihood]:
        # A scoring chunk is one call: it waits for a call slot like a generate batch.
        job = (inputs, ctxlens if self.tokenizer is not None else None, pairs, config)
        group: Hashable = ("score", object())
        result: list[Loglikelihood] = await self._batcher.submit(job, group, 1, self._slots(config))
        return result

    async def _send(self, group: Hashable, jobs: list[Any]) -> list[Any]:
        if isinstance(group, tuple) and group[0] == "generate":
            return await self._send_generate(jobs)
        return [await self._send_score(*job) for job in jobs]

    async def _send_generate(self, jobs: list[Any]) -> list[str]:
        _, kwargs, config = jobs[0]
        messages = [job[0] for job in jobs]
        if self.message_format == "chat" and self.batch_size == 1:
            messages = messages[0]
        payload = self.create_payload(
            messages, generate=True, gen_kwargs=copy.deepcopy(kwargs), seed=config.seed
        )
        outputs = as_responses(await self._post(self.generate_path, payload, config))
        texts = _parsed(self, "parse_generations", lambda: self.parse_generations(outputs))
        if not isinstance(texts, Sequence) or isinstance(texts, str):
            raise ModelError(
                f"{type(self).__name__}.parse_generations must return a list of strings, "
                f"got {type(texts).__name__}"
            )
        if len(texts) != len(jobs):
            raise ModelError(
                f"{type(self).__name__}.parse_generations returned {len(texts)} results for "
                f"{len(jobs)} requests; it must return one per request, in order"
            )
        return ["" if text is None else str(text) for text in texts]

    async def _send_score(
        self,
        inputs: list[Any],
        ctxlens: list[int] | None,
        pairs: list[tuple[str, str]],
        config: GenerateConfig,
    ) -> list[Loglikelihood]:
        # `pairs` is gauge's addition: an lm-eval subclass whose payload method takes
        # exactly lm-eval's keywords (no **kwargs) gets exactly those. gen_kwargs is {}
        # so a payload method that reads `gen_kwargs.get(...)` (lm-eval's docs) works.
        extra = {"pairs": pairs} if _takes_pairs(type(self)) else {}
        payload = self.create_payload(
            inputs, generate=False, gen_kwargs={}, seed=config.seed, **extra
        )
        outputs = as_responses(await self._post(self.loglikelihood_path, payload, config))
        tokens = inputs if ctxlens is not None else None
        scores = _parsed(
            self,
            "parse_logprobs",
            lambda: self.parse_logprobs(outputs, tokens=tokens, ctxlens=ctxlens),
        )
        if not isinstance(scores, Sequence) or len(scores) != len(inputs):
            got = len(scores) if isinstance(scores, Sequence) else type(scores).__name__
            raise ModelError(
                f"{type(self).__name__}.parse_logprobs returned {got} results for "
                f"{len(inputs)} requests; it must return one (logprob, is_greedy) per request, "
                "in order"
            )
        owner = type(self).__name__
        if ctxlens is None:
            return [as_loglikelihood(owner, score, None, None) for score in scores]
        return [
            as_loglikelihood(owner, score, inputs[i], ctxlens[i]) for i, score in enumerate(scores)
        ]

    async def _post(self, path: str, payload: Any, config: GenerateConfig) -> Any:
        if not isinstance(payload, dict):
            raise ModelError(
                f"{type(self).__name__}.create_payload must return a dict, "
                f"got {type(payload).__name__}"
            )
        if config.extra_body:
            payload = {**payload, **config.extra_body}
        header = self.header
        headers = dict(header() if callable(header) else header)
        if config.extra_headers:
            headers.update(config.extra_headers)
        body, _ = await self._http().post_json(path or self._base(), payload, headers=headers)
        return body

    def _base(self) -> str:
        if not self.base_url:
            raise ConfigError(
                f"provider {self.name!r} needs the API's URL: pass base_url= (or -M base_url=) "
                f"or set {self.name.upper().replace('-', '_')}_BASE_URL"
            )
        return self.base_url

    def _http(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(self._base(), proxy=self.proxy)
        return self._client


def _store_key(self: TemplateAPI, value: Secret | str | None) -> None:
    # The base class's key, kept aside for a subclass whose `api_key` is a property.
    self.__dict__["_given_api_key"] = value


def _defines(cls: type, name: str) -> bool:
    """Whether a class below TemplateAPI in `cls`'s MRO defines `name`."""
    for klass in cls.__mro__:
        if klass is TemplateAPI:
            return False
        if name in klass.__dict__:
            return True
    return False


@functools.cache
def _takes_pairs(cls: type[TemplateAPI]) -> bool:
    """Whether the class's payload method accepts `pairs=` (by name or **kwargs)."""
    method = cls.create_payload if _defines(cls, "create_payload") else cls._create_payload
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read: pass it, as before
        return True
    return any(p.name == "pairs" or p.kind is p.VAR_KEYWORD for p in params)


def _positive(value: Any, name: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"-M {name}={value!r} must be a whole number >= 1")
    return value


def _tokenizer(spec: str | Tokenizer | None) -> Tokenizer | None:
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        from gauge.model.tokenization import load_tokenizer

        return load_tokenizer(spec)
    if not all(hasattr(spec, name) for name in ("encode", "decode", "prefix_token_id")):
        raise ConfigError(
            "tokenizer must be a path (-M tokenizer=PATH) or an object with encode, decode "
            f"and prefix_token_id, got {type(spec).__name__}"
        )
    return spec


def _parsed(api: TemplateAPI, method: str, parse: Any) -> Any:
    """Run a subclass's parser; its failure is one line naming the method."""
    try:
        return parse()
    except (UnsupportedFeature, ModelError):
        raise
    except Exception as ex:
        raise ModelError(
            f"{type(api).__name__}.{method} failed on the response: "
            f"{type(ex).__name__}: {one_line(ex)}"
        ) from ex
