"""Model.loglikelihood's engine: per-item cache, provider batches, the reliability stages.

    items -> cache lookups (one worker batch) -> misses in batches of
    api.score_batch_size() -> each batch, concurrently:
        total deadline -> retry -> rate control -> attempt -> api.loglikelihood
    -> cache stores -> results in input order

A batch travels through the Model's one pipeline (pipeline.py) as a ModelRequest
whose operation asks the provider to score instead of generate. Its cache stage
is passed over (the batch's config has the cache off) because scoring caches per
item, here, in the same store. Concurrency needs no extra limit: the key stage's
connection slot bounds the batches in flight per connection key, as it bounds
generate calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import orjson

from gauge.errors import ConfigError
from gauge.model.cache.key import (
    CacheKey,
    args_material,
    canonical_json,
    config_material,
    digest_of,
    public_url,
)
from gauge.model.cache.policy import CachePolicy, as_policy, cache_epoch
from gauge.model.cache.stage import current_worker, is_fresh
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessageUser
from gauge.model.request import ModelRequest
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest

if TYPE_CHECKING:
    from gauge.model.model import Model

Operation = Literal["loglikelihood", "loglikelihood_rolling"]
Item = LoglikelihoodRequest | str

CACHE_SCHEMA = 1
"""Bump when the scoring key material or the stored value format changes."""


class Scorer:
    """The scoring side of one Model (built on first use, reused after)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    async def run(
        self, operation: Operation, items: Sequence[Item], config: GenerateConfig
    ) -> list[Loglikelihood]:
        """Score `items` in order, answering from the cache where it is on."""
        if not items:
            return []
        _check(operation, items)
        results: list[Loglikelihood | None] = [None] * len(items)
        policy = _policy(config)
        worker = current_worker() if policy is not None else None
        keys: list[CacheKey] = []
        if policy is not None and worker is not None and worker.disabled is None:
            keys = [self._key(operation, item, config, policy) for item in items]
            found = await worker.get_many([k.digest for k in keys])
            for i, entry in enumerate(found):
                if entry is not None and is_fresh(entry[0], policy):
                    results[i] = _load(entry[1])
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            size = max(1, self.model.api.score_batch_size())
            batches = [missing[i : i + size] for i in range(0, len(missing), size)]
            scored = await asyncio.gather(
                *(self._batch(operation, [items[i] for i in b], config) for b in batches)
            )
            stores = []
            for batch, batch_results in zip(batches, scored, strict=True):
                for i, result in zip(batch, batch_results, strict=True):
                    results[i] = result
                    if keys and worker is not None and policy is not None:
                        stores.append(worker.put(_row(keys[i], policy, result)))
            if stores:
                await asyncio.gather(*stores)
        return [r for r in results if r is not None]

    async def _batch(
        self, operation: Operation, items: list[Item], config: GenerateConfig
    ) -> list[Loglikelihood]:
        # The rate stage estimates tokens from the input's text when a TPM budget is
        # set, plus max_tokens: scoring generates nothing, so that is dropped.
        # The cache is per item (run), not per batch.
        config = config.model_copy(update={"max_tokens": None, "cache": None})
        texts = [i if isinstance(i, str) else i.context + i.continuation for i in items]
        message = ChatMessageUser(content="\n".join(texts))
        request = ModelRequest([message], [], "auto", config, operation=operation, items=items)
        output = await self.model._call(request)
        if output.usage is not None:
            self.model._account(output.usage)
        assert request.results is not None  # set by the provider call that returned
        return request.results

    def _key(
        self, operation: Operation, item: Item, config: GenerateConfig, policy: CachePolicy
    ) -> CacheKey:
        api = self.model.api
        parts: dict[str, bytes] = {
            "schema": canonical_json(CACHE_SCHEMA),
            "operation": canonical_json(operation),
            "provider": canonical_json(api.name),
            "model": canonical_json(api.model_name),
            "base_url": canonical_json(public_url(api.base_url)),
            "scopes": canonical_json(policy.scopes),
        }
        if isinstance(item, str):
            parts["text"] = canonical_json(item)
        else:
            parts["context"] = canonical_json(item.context)
            parts["continuation"] = canonical_json(item.continuation)
        if policy.per_epoch:
            parts["epoch"] = canonical_json(cache_epoch.get())
        for name, value in config_material(config).items():
            parts[f"config.{name}"] = canonical_json(value)
        # A tokenizer, max_length or score_endpoint changes the numbers: they key too.
        if api.model_args and (material := args_material(api.model_args)):
            parts["model_args"] = canonical_json(material)
        return CacheKey(self.model.name, parts, digest_of(parts))


def as_requests(pairs: Sequence[tuple[str, str]]) -> list[LoglikelihoodRequest]:
    """`(context, continuation)` pairs as requests, or a ConfigError naming the bad one."""
    requests: list[LoglikelihoodRequest] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, LoglikelihoodRequest):
            requests.append(pair)
            continue
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigError(
                f"loglikelihood request {i} is {_show(pair)}; "
                "pass (context, continuation) pairs of strings"
            )
        requests.append(LoglikelihoodRequest(pair[0], pair[1]))
    return requests


def _check(operation: Operation, items: Sequence[Item]) -> None:
    # Bad input fails before anything is sent, not as a provider error inside a batch.
    for i, item in enumerate(items):
        if operation == "loglikelihood_rolling":
            if not isinstance(item, str):
                raise ConfigError(f"rolling text {i} is {_show(item)}; pass strings")
            continue
        if not isinstance(item, LoglikelihoodRequest):
            raise ConfigError(
                f"loglikelihood request {i} is {_show(item)}; pass LoglikelihoodRequests"
            )
        if not isinstance(item.context, str) or not isinstance(item.continuation, str):
            raise ConfigError(
                f"loglikelihood request {i} has a context or continuation that is not a string"
            )
        if not item.continuation:
            raise ConfigError(
                f"loglikelihood request {i} has an empty continuation; "
                "drop it or give the text to score as the continuation"
            )


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _policy(config: GenerateConfig) -> CachePolicy | None:
    setting = config.cache
    if not setting:
        return None
    return setting if isinstance(setting, CachePolicy) else as_policy(setting)


def _load(value: bytes) -> Loglikelihood:
    data = orjson.loads(value)
    return Loglikelihood(float(data["logprob"]), bool(data["is_greedy"]), int(data["tokens"]))


def _row(
    key: CacheKey, policy: CachePolicy, result: Loglikelihood
) -> tuple[bytes, str, float, float | None, bytes, bytes]:
    created = time.time()
    seconds = policy.seconds
    value = orjson.dumps(
        {"logprob": result.logprob, "is_greedy": result.is_greedy, "tokens": result.tokens}
    )
    return (
        key.digest,
        key.model,
        created,
        None if seconds is None else created + seconds,
        orjson.dumps(key.fingerprint()),
        value,
    )


__all__ = ["Scorer", "as_requests"]
