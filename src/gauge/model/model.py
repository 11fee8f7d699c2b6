"""Model: a provider behind the generate pipeline, with usage totals."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from gauge.errors import UnsupportedConfig, UnsupportedFeature
from gauge.model import memo, pipeline
from gauge.model.api import ModelAPI
from gauge.model.cache.policy import CachePolicy
from gauge.model.cache.stage import cache_config, is_hit
from gauge.model.config import ADVISORY_FIELDS, PROVIDER_FIELDS, GenerateConfig, as_config
from gauge.model.cost import Price, cost_of, find_price
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, ModelUsage
from gauge.model.prepare import as_messages, prepare_messages, resolve_tools
from gauge.model.retry import RetryPolicy
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.scoring.run import Scorer, as_requests
from gauge.model.tool_functions import as_tool_infos, check_tools
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    from gauge.model.rate.keys import ConnectionKey
    from gauge.model.sync import SyncModel

log = logging.getLogger("gauge.model")

_usage_by_model: dict[str, ModelUsage] = {}
_warned: set[tuple[str, str]] = set()


def model_usage() -> dict[str, ModelUsage]:
    """Token usage of this process so far, per model name."""
    return dict(_usage_by_model)


class Model:
    """A model to generate with: `await model.generate("Hi")`.

    Build one with `get_model("provider/name")`. The provider (`api`) only
    translates; this class resolves config, prepares messages, and runs the
    pipeline (retries, connection limits, deadlines) and usage accounting.
    """

    def __init__(
        self,
        api: ModelAPI,
        config: GenerateConfig | None = None,
        replicas: list[ModelAPI] | None = None,
    ) -> None:
        self.api = api
        self.replicas = replicas or [api]
        """The servers behind this model: one, or an endpoint pool's replicas (pool.py)."""
        defaults = GenerateConfig()
        if (max_tokens := api.max_tokens()) is not None:
            defaults = GenerateConfig(max_tokens=max_tokens)
        self.config = defaults.merge(config or api.config)
        self.usage = ModelUsage()
        self.retry_policy = RetryPolicy()
        self.sleep: pipeline.Sleep = asyncio.sleep
        """Backoff and budget sleep; tests swap in a fake one (the rate clock follows it)."""
        self._skew = 0.0
        self._memo_key: tuple[Any, ...] | None = None
        pool = self.replicas if len(self.replicas) > 1 else None
        self._call = pipeline.model_pipeline(api, self.retry_policy, self._sleep, self._clock, pool)
        self._key = pipeline.key_finder(api, self._clock)

    @property
    def name(self) -> str:
        """`provider/model`, as users type it."""
        return f"{self.api.name}/{self.api.spec_name()}"

    def __repr__(self) -> str:
        return f"Model({self.name!r})"

    async def generate(
        self,
        input: str | list[ChatMessage],
        tools: Sequence[ToolInfo | Callable[..., Any]] | None = None,
        tool_choice: ToolChoice | None = None,
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> ModelOutput:
        """Generate a reply to `input` (a prompt or a conversation).

        `cache`: True, an expiry such as "1D", or a CachePolicy reuses stored
        responses; False turns the cache off; None follows `config.cache`.
        `tools`: ToolInfo objects, or Python functions with a docstring (described
        by gauge.model.tool_functions.tool_info).
        """
        request = self._request(input, tools, tool_choice, self._with_cache(config, cache))
        output = await self._call(request)
        if output.usage is not None and not is_hit(output):
            self._account(output.usage, _from_batch(output))
        return output

    async def stream(
        self,
        input: str | list[ChatMessage],
        tools: Sequence[ToolInfo | Callable[..., Any]] | None = None,
        tool_choice: ToolChoice | None = None,
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> AsyncIterator[str]:
        """Yield text deltas as they arrive.

        A stream goes through the same pipeline as `generate`: failures before the
        first delta are retried, it holds a connection slot until it ends, its
        usage is charged to the key's budgets and counted, and with `cache` on a
        stored reply is replayed as one delta (no request is made). Once text has
        been yielded an error is raised as is. `attempt_timeout` bounds the wait
        for the first delta and for each later one, `timeout` the whole stream.
        """
        request = self._request(input, tools, tool_choice, self._with_cache(config, cache))
        request.operation = "stream"
        output = await self._call(request)
        live = request.live
        if live is None:  # a cache hit, or a stream that ended before any text
            if output.usage is not None and not is_hit(output):
                self._account(output.usage)
            if output.completion:
                yield output.completion
            return
        live.on_end(self._stream_ended)
        async with contextlib.aclosing(live.deltas()) as deltas:
            async for delta in deltas:
                yield delta

    def _stream_ended(self, output: ModelOutput | None, error: BaseException | None) -> None:
        if output is not None and output.usage is not None:
            self._account(output.usage, _from_batch(output))

    async def loglikelihood(
        self,
        requests: Sequence[tuple[str, str]],
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> list[tuple[float, bool]]:
        """(summed logprob, is greedy) of each `(context, continuation)`, in order.

        lm-eval's semantics (see gauge.model.scoring). Requests go to the provider
        in batches of `api.score_batch_size()`, concurrently, with the same
        retries, deadlines and rate limits as `generate`; `cache` works per item.
        """
        items = as_requests(requests)
        return [(r.logprob, r.is_greedy) for r in await self.score(items, config, cache)]

    async def loglikelihood_rolling(
        self,
        texts: Sequence[str],
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> list[float]:
        """Loglikelihood of each whole text (for perplexity), in order."""
        return [r.logprob for r in await self.score_rolling(texts, config, cache)]

    async def score(
        self,
        requests: Sequence[LoglikelihoodRequest],
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> list[Loglikelihood]:
        """Like `loglikelihood`, with the full results (logprob, is_greedy, tokens)."""
        return await self._scorer().run(
            "loglikelihood", requests, self._score_config(config, cache)
        )

    async def score_rolling(
        self,
        texts: Sequence[str],
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> list[Loglikelihood]:
        """Like `loglikelihood_rolling`, with the full results."""
        return await self._scorer().run(
            "loglikelihood_rolling", list(texts), self._score_config(config, cache)
        )

    def _scorer(self) -> Scorer:
        scorer: Scorer | None = self.__dict__.get("_scoring")
        if scorer is None:
            if not self.api.supports_loglikelihood:
                raise UnsupportedFeature(self.api.scoring_unsupported())
            scorer = self.__dict__["_scoring"] = Scorer(self)
        return scorer

    @staticmethod
    def _with_cache(
        config: GenerateConfig | dict[str, Any] | None, cache: bool | str | CachePolicy | None
    ) -> GenerateConfig | dict[str, Any] | None:
        """`config` with the `cache` argument layered on top (None: as it is)."""
        if cache is None:
            return config
        layer = cache_config(cache)
        base = as_config(config)
        return layer if base is None else base.merge(layer)

    def _score_config(
        self,
        config: GenerateConfig | dict[str, Any] | None,
        cache: bool | str | CachePolicy | None,
    ) -> GenerateConfig:
        call_config = config if isinstance(config, GenerateConfig) else as_config(config)
        cfg = self.config.merge(call_config) if call_config is not None else self.config
        return cfg if cache is None else cfg.merge(cache_config(cache))

    def _request(
        self,
        input: str | list[ChatMessage],
        tools: Sequence[ToolInfo | Callable[..., Any]] | None,
        tool_choice: ToolChoice | None,
        config: GenerateConfig | dict[str, Any] | None,
    ) -> pipeline.ModelRequest:
        call_config = config if isinstance(config, GenerateConfig) else as_config(config)
        cfg = self.config.merge(call_config) if call_config is not None else self.config
        cfg = self._check_supported(cfg)
        messages = prepare_messages(as_messages(input), self.api, cfg)
        given = as_tool_infos(tools) if tools else []
        check_tools(given, tool_choice)
        tool_list, choice = resolve_tools(messages, given, tool_choice, self.api)
        return pipeline.ModelRequest(messages, tool_list, choice, cfg)

    def _check_supported(self, config: GenerateConfig) -> GenerateConfig:
        """Fail (or drop, if asked) on set fields the provider does not honour."""
        honours = self.api.honours
        unsupported = [
            name
            for name in config.model_fields_set
            if name in PROVIDER_FIELDS and name not in honours and _asks(getattr(config, name))
        ]
        if not unsupported:
            return config
        strict = sorted(n for n in unsupported if n not in ADVISORY_FIELDS)
        if strict and not config.drop_unsupported:
            raise UnsupportedConfig(
                f"provider {self.api.name!r} does not support {', '.join(strict)}; "
                "remove it, or set drop_unsupported=True to send the request without it"
            )
        for field in sorted(unsupported):
            if (self.api.name, field) not in _warned:
                _warned.add((self.api.name, field))
                log.warning("provider %r ignores %s; dropping it", self.api.name, field)
        values = {
            name: getattr(config, name)
            for name in config.model_fields_set
            if name not in unsupported
        }
        return GenerateConfig.model_construct(_fields_set=set(values), **values)

    async def _sleep(self, seconds: float) -> None:
        started = time.monotonic()
        await self.sleep(seconds)
        # A fake sleep is a fake clock: the rate controller's pauses and budgets must
        # see the time it pretended to pass (and no more), or they would wait for real.
        short = seconds - (time.monotonic() - started)
        if short > 0.001:
            self._skew += short

    def _clock(self) -> float:
        return time.monotonic() + self._skew

    @functools.cached_property
    def price(self) -> Price | None:
        """This model's price (gauge.model.cost), looked up once; None: unknown.

        An Azure OpenAI deployment is priced under `azure/<deployment>`."""
        provider = "azure" if getattr(self.api, "azure", False) is True else self.api.name
        return find_price(provider, self.api.model_name) or find_price(
            provider, self.api.spec_name()
        )

    def _account(self, usage: ModelUsage, batch: bool = False) -> None:
        if usage.cost is None and not usage.empty:
            usage.cost = cost_of(usage, self.price, batch)
        self.usage = self.usage + usage
        name = self.name
        total = _usage_by_model.get(name)
        _usage_by_model[name] = usage if total is None else total + usage

    def info(self) -> dict[str, Any]:
        """What this model is and what it supports."""
        api = self.api
        return {
            "name": self.name,
            "provider": api.name,
            "model_id": api.model_name,
            "base_url": ",".join(r.base_url or "" for r in self.replicas),
            "supports_streaming": api.supports_streaming,
            "supports_chat": api.supports_chat,
            "max_tokens": self.config.max_tokens,
            "honours": sorted(api.honours),
        }

    def key(self) -> ConnectionKey:
        """This model's connection key in the running event loop: its slots
        (`limiter`), budgets, pause, early stop and counters (see rate/keys.py)."""
        return self._key()

    def rate_stats(self) -> dict[str, Any]:
        """Concurrency, in flight, rate-limit hits and tokens/min of this model's key.

        Read inside the event loop the model runs in (states are per loop). An
        endpoint pool's are summed over its replicas, each listed in `replicas`.
        """
        if len(self.replicas) == 1:
            return self._key().stats()
        per = [pipeline.key_finder(r, self._clock)().stats() for r in self.replicas]
        total = dict(per[0])
        for field in _SUMMED:
            total[field] = sum(stats[field] for stats in per)
        total["key"] = f"pool of {len(per)}: " + ", ".join(stats["key"] for stats in per)
        total["replicas"] = per
        return total

    def sync(self) -> SyncModel:
        """A blocking facade for scripts and notebooks."""
        from gauge.model.sync import SyncModel

        return SyncModel(self)

    async def close(self) -> None:
        """Close the provider's clients (every replica's)."""
        for api in self.replicas:
            await api.close()

    async def __aenter__(self) -> Model:
        # A context-managed model is private to its block: take it out of the memo.
        memo.forget(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_SUMMED = (
    "concurrency",
    "in_flight",
    "peak_in_flight",
    "requests",
    "rate_limit_hits",
    "retried_429s",
    "failures",
    "pauses",
    "tokens",
    "tokens_per_minute",
)


def _from_batch(output: ModelOutput) -> bool:
    """Whether `output` came from a provider batch job (priced at the batch multiplier)."""
    return bool(output.metadata and output.metadata.get("batch"))


def _asks(value: object) -> bool:
    """Whether a config value asks for something (None, False, [] and {} ask for nothing)."""
    return value is not None and value is not False and value != [] and value != {}
