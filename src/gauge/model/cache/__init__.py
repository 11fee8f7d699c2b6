"""The response cache: one SQLite file of JSON responses, keyed by SHA-256
(optionally shared through Redis).

    policy.py   CachePolicy, expiry units, `--cache[=DURATION]`, `cache_epoch`
    key.py      canonical JSON of a request's key components -> SHA-256 key
    store.py    the SQLite (WAL) store: get, put, size, clear, expired, prune
    worker.py   lookups on the caller's thread (read-only SQLite), stores on one
                thread per database, so neither blocks the event loop
    stage.py    the pipeline stage (hit: return; miss: call, then store; streams
                are stored when they end)
    redis_store.py, redis_tier.py, redis_admin.py
                the shared cache in Redis (GAUGE_SHARED_CACHE): its switch, its
                lookups and stores on the event loop, its management
    explain.py  why a request hits or misses, and the nearest stored entry
    api.py      the management functions (cache_path, cache_size, ...)

Names are imported on first use, so `GenerateConfig` can import the policy
without loading SQLite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "CachePolicy": "policy",
    "cache_epoch": "policy",
    "parse_cache_flag": "policy",
    "CacheError": "store",
    "cache_path": "api",
    "cache_size": "api",
    "cache_clear": "api",
    "cache_list_expired": "api",
    "cache_prune": "api",
    "cache_explain": "explain",
}

__all__ = [
    "CacheError",
    "CachePolicy",
    "cache_clear",
    "cache_epoch",
    "cache_explain",
    "cache_list_expired",
    "cache_path",
    "cache_prune",
    "cache_size",
    "parse_cache_flag",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gauge.model.cache' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gauge.model.cache.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from gauge.model.cache.api import (
        cache_clear,
        cache_list_expired,
        cache_path,
        cache_prune,
        cache_size,
    )
    from gauge.model.cache.explain import cache_explain
    from gauge.model.cache.policy import CachePolicy, cache_epoch, parse_cache_flag
    from gauge.model.cache.store import CacheError
