"""Model: a provider behind the generate pipeline, with usage totals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from gauge.errors import UnsupportedConfig, UnsupportedFeature
from gauge.model import pipeline
from gauge.model.api import ModelAPI
from gauge.model.cache.policy import CachePolicy
from gauge.model.cache.stage import cache_config, is_hit, response_cache
from gauge.model.config import ADVISORY_FIELDS, PROVIDER_FIELDS, GenerateConfig, as_config
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, ModelUsage
from gauge.model.prepare import as_messages, prepare_messages, resolve_tools
from gauge.model.rate.keys import key_state
from gauge.model.rate.stage import rate_control
from gauge.model.retry import RetryPolicy, attach_history, fatal_stop
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.scoring.run import Scorer, as_requests
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
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

    def __init__(self, api: ModelAPI, config: GenerateConfig | None = None) -> None:
        self.api = api
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
        self._call = pipeline.build_pipeline(
            pipeline.provider_call(api),
            [
                pipeline.total_deadline,
                response_cache(api),
                pipeline.retry(api, self.retry_policy, self._sleep),
                rate_control(api, self._sleep, self._clock),
                pipeline.attempt,
            ],
        )

    @property
    def name(self) -> str:
        """`provider/model`, as users type it."""
        return f"{self.api.name}/{self.api.spec_name()}"

    def __repr__(self) -> str:
        return f"Model({self.name!r})"

    async def generate(
        self,
        input: str | list[ChatMessage],
        tools: list[ToolInfo] | None = None,
        tool_choice: ToolChoice | None = None,
        config: GenerateConfig | dict[str, Any] | None = None,
        cache: bool | str | CachePolicy | None = None,
    ) -> ModelOutput:
        """Generate a reply to `input` (a prompt or a conversation).

        `cache`: True, an expiry such as "1D", or a CachePolicy reuses stored
        responses; False turns the cache off; None follows `config.cache`.
        """
        if cache is not None:
            layer = cache_config(cache)
            base = as_config(config)
            config = layer if base is None else base.merge(layer)
        request = self._request(input, tools, tool_choice, config)
        output = await self._call(request)
        if output.usage is not None and not is_hit(output):
            self._account(output.usage)
        return output

    async def stream(
        self,
        input: str | list[ChatMessage],
        tools: list[ToolInfo] | None = None,
        tool_choice: ToolChoice | None = None,
        config: GenerateConfig | dict[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Yield text deltas as they arrive.

        Failures before the first delta are retried like `generate`; once text has
        been yielded an error is raised as is. `attempt_timeout` bounds the wait for
        each delta and `timeout` the whole stream.
        """
        request = self._request(input, tools, tool_choice, config)
        cfg = request.config
        max_retries = self.retry_policy.max_retries if cfg.max_retries is None else cfg.max_retries
        deadline = None if cfg.timeout is None else time.monotonic() + cfg.timeout
        api = self.api
        state = key_state(
            api.connection_key(), api.max_connections(), self._clock, api.max_connections_limit()
        )
        state.configure(cfg.max_connections, cfg.rpm, cfg.tpm)
        limiter = state.limiter
        guard = fatal_stop(self.api.connection_key())
        waited = 0.0
        while True:
            started_at = time.perf_counter()
            yielded = False
            try:
                if guard.error is not None and guard.holds():
                    raise guard.replay()
                if state.gated:
                    await state.admit(0, self._sleep)
                await limiter.acquire()
                try:
                    deltas = self.api.stream(request.input, request.tools, request.tool_choice, cfg)
                    try:
                        while True:
                            wait = _remaining(deadline, cfg.attempt_timeout)
                            try:
                                delta = await asyncio.wait_for(anext(deltas), wait)
                            except StopAsyncIteration:
                                if guard.count:
                                    guard.succeeded()
                                return
                            yielded = True
                            yield delta
                    finally:
                        # Async generators close here, deterministically; other iterators may not.
                        if (aclose := getattr(deltas, "aclose", None)) is not None:
                            await aclose()
                finally:
                    limiter.release()
            except Exception as ex:
                if isinstance(ex, TimeoutError) and not isinstance(ex, pipeline.AttemptTimeout):
                    ex = pipeline.AttemptTimeout(
                        f"stream stalled past attempt_timeout/timeout "
                        f"({cfg.attempt_timeout or cfg.timeout}s)"
                    )
                decision = pipeline.classify(self.api, ex)
                if getattr(ex, "gauge_key_stopped", None) is None:  # not a stop's replay
                    state.failed(decision.kind, decision.retry_after, 0, None)
                policy = self.retry_policy
                wait_s = pipeline.next_wait(
                    policy, guard, request, ex, decision, started_at, max_retries
                )
                if (
                    yielded
                    or wait_s is None
                    or waited + wait_s > policy.max_total_wait
                    or (deadline is not None and time.monotonic() + wait_s > deadline)
                ):
                    attach_history(ex, request.attempts)
                    raise ex from None
                request.attempts[-1].wait = wait_s
                waited += wait_s
                await pipeline.backoff(self._sleep, wait_s, decision.kind == "transient")

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
        tools: list[ToolInfo] | None,
        tool_choice: ToolChoice | None,
        config: GenerateConfig | dict[str, Any] | None,
    ) -> pipeline.ModelRequest:
        call_config = config if isinstance(config, GenerateConfig) else as_config(config)
        cfg = self.config.merge(call_config) if call_config is not None else self.config
        cfg = self._check_supported(cfg)
        messages = prepare_messages(as_messages(input), self.api, cfg)
        tool_list, choice = resolve_tools(messages, list(tools or ()), tool_choice, self.api)
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

    def _account(self, usage: ModelUsage) -> None:
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
            "base_url": api.base_url,
            "supports_streaming": api.supports_streaming,
            "supports_chat": api.supports_chat,
            "max_tokens": self.config.max_tokens,
            "honours": sorted(api.honours),
        }

    def rate_stats(self) -> dict[str, Any]:
        """Concurrency, in flight, rate-limit hits and tokens/min of this model's key.

        Read inside the event loop the model runs in (states are per loop).
        """
        api = self.api
        key = api.connection_key()
        return key_state(key, api.max_connections(), maximum=api.max_connections_limit()).stats()

    def sync(self) -> SyncModel:
        """A blocking facade for scripts and notebooks."""
        from gauge.model.sync import SyncModel

        return SyncModel(self)

    async def close(self) -> None:
        """Close the provider's clients."""
        await self.api.close()

    async def __aenter__(self) -> Model:
        # A context-managed model is private to its block: take it out of the memo.
        from gauge.model.factory import forget

        forget(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _asks(value: object) -> bool:
    """Whether a config value asks for something (None, False, [] and {} ask for nothing)."""
    return value is not None and value is not False and value != [] and value != {}


def _remaining(deadline: float | None, per_step: float | None) -> float | None:
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    if per_step is None:
        return left
    return per_step if left is None else min(left, per_step)
