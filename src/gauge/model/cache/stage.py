"""The cache stage of the generate pipeline.

It sits right inside the total deadline and outside retries and the connection
slot: a hit returns at once without taking a slot, and a miss stores the final
output after whatever retries it took. A lookup reads on the event loop's own
thread (pending stores first, then a read-only SQLite connection that never
waits for a lock), so a hit costs no thread hop; stores, and the few lookups
that read cannot answer, go to the database's worker thread (see worker.py).
The key components every request of a model shares are encoded once per stage.
With the shared cache on (GAUGE_SHARED_CACHE, GAUGE_CACHE_URL: redis_store.py),
`current_worker` is a SharedCache instead (redis_tier.py): Redis, optionally
behind the local file as a near tier.

Hits carry `metadata["cache"] = "hit"`; outputs that went to the model with the
cache on carry "miss". Outputs with an error or a content_filter stop are
returned but never stored.
"""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from gauge.errors import ConfigError, one_line
from gauge.model.cache.key import CacheKey, ModelParts, model_material, request_key
from gauge.model.cache.policy import CachePolicy, as_policy
from gauge.model.cache.redis_store import ENV_MODE, ENV_URL, cache_setting, shared_state_url
from gauge.model.cache.redis_tier import SharedCache, shared_cache
from gauge.model.config import GenerateConfig
from gauge.model.output import ModelOutput

if TYPE_CHECKING:
    from gauge.model.api import ModelAPI
    from gauge.model.cache.worker import Worker
    from gauge.model.pipeline import Call, ModelRequest, Stage


def response_cache(api: ModelAPI) -> Stage:
    """A stage that answers from the cache when `config.cache` is on."""

    def wrap(call: Call) -> Call:
        # [what they were built from, model parts]
        model_parts = functools.partial(_model_parts, api, [None, None])

        async def stage(request: ModelRequest) -> ModelOutput:
            config = request.config
            setting = config.cache
            if not setting:
                return await call(request)
            policy = setting if isinstance(setting, CachePolicy) else as_policy(setting)
            worker = current_worker()
            if policy is None or worker.disabled is not None:
                return await call(request)
            if request.operation == "stream":
                # A streamed reply is stored as its text: kept apart from generate's
                # entries, whose tool calls and logprobs a stream does not carry.
                policy = _streamed(policy)
            key = request_key(
                api.name,
                api.model_name,
                api.base_url,
                request.input,
                request.tools,
                request.tool_choice,
                config,
                policy,
                model_parts=model_parts(),
            )
            if isinstance(worker, SharedCache):  # Redis, maybe with a near tier
                found = await worker.find(key.digest, policy.seconds)
            else:
                answered, found = worker.lookup(key.digest)
                if not answered:
                    found = await worker.get(key.digest)
            if found is not None and is_fresh(found[0], policy):
                output = decode(found[1])
                _mark(output, "hit")
                return output
            output = await call(request)
            live = request.live
            if live is not None:  # a stream past its first delta: stored once it ends
                live.on_end(functools.partial(_store_stream, worker, key, policy))
            elif storable(output):
                await worker.put(entry_row(key, policy, output))
            _mark(output, "miss")
            return output

        return stage

    return wrap


def _model_parts(api: ModelAPI, shared: list[Any]) -> ModelParts:
    """Per-model key components, encoded again only if the model changed."""
    source = (api.name, api.model_name, api.base_url, api.model_args)
    if shared[0] != source:
        shared[1] = model_material(*source)
        args = source[3]
        shared[0] = (*source[:3], None if args is None else dict(args))
    parts: ModelParts = shared[1]
    return parts


def _streamed(policy: CachePolicy) -> CachePolicy:
    """`policy` with a scope that keys streamed replies apart."""
    return policy.model_copy(update={"scopes": {**policy.scopes, "gauge.operation": "stream"}})


def _store_stream(
    worker: Worker | SharedCache,
    key: CacheKey,
    policy: CachePolicy,
    output: ModelOutput | None,
    error: BaseException | None,
) -> None:
    """A stream ended: store it when it completed (not on an error or an early stop)."""
    if output is not None and storable(output):
        worker.put(entry_row(key, policy, output))


def decode(value: bytes) -> ModelOutput:
    """A stored value as a ModelOutput.

    Strict validation first: stored values are what `model_dump_json` wrote, so
    nothing needs coercing, and strict skips the lax attempts (~25 % of a decode).
    A value strict refuses is validated as before.
    """
    try:
        return ModelOutput.model_validate_json(value, strict=True)
    except ValidationError:
        return ModelOutput.model_validate_json(value)


def is_fresh(created: float, policy: CachePolicy, now: float | None = None) -> bool:
    """Whether an entry stored at `created` is young enough for `policy`.

    The looking-up policy decides, so raising the expiry from 1D to 1W makes
    older entries hit again rather than missing everything.
    """
    seconds = policy.seconds
    return seconds is None or (time.time() if now is None else now) - created < seconds


def storable(output: ModelOutput) -> bool:
    """Errors and content-filtered outputs are never stored."""
    return output.error is None and all(c.stop_reason != "content_filter" for c in output.choices)


def entry_row(
    key: CacheKey, policy: CachePolicy, output: ModelOutput, now: float | None = None
) -> tuple[bytes, str, float, float | None, bytes, bytes]:
    """The database row for `output` stored under `key`."""
    created = time.time() if now is None else now
    seconds = policy.seconds
    value = output.model_dump_json(exclude_none=True).encode()
    fingerprint = orjson.dumps(key.fingerprint())
    return (
        key.digest,
        key.model,
        created,
        None if seconds is None else created + seconds,
        fingerprint,
        value,
    )


_current: tuple[tuple[object, ...], Worker | SharedCache] | None = None
_ENV_NAMES = ("GAUGE_CACHE_DIR", "XDG_CACHE_HOME", ENV_MODE, ENV_URL)
# The environment's own mapping, read directly: two `os.environ.get` calls (key
# encoding, value decoding) were a few percent of a cache hit. CPython's os.environ
# keeps its contents in `_data` under `encodekey` keys; anywhere else, `get`.
_env_data: dict[Any, Any] | None = getattr(os.environ, "_data", None)
_env_keys: tuple[Any, ...] = _ENV_NAMES
if isinstance(_env_data, dict) and callable(encode := getattr(os.environ, "encodekey", None)):
    _env_keys = tuple(encode(name) for name in _ENV_NAMES)
else:
    _env_data = None


def current_worker() -> Worker | SharedCache:
    """The cache the environment points at now (in this process): the worker of the
    local database, or with GAUGE_SHARED_CACHE / GAUGE_CACHE_URL the shared cache."""
    global _current
    data = _env_data if _env_data is not None else os.environ
    keys = _env_keys
    env: tuple[object, ...] = (
        data.get(keys[0]),
        data.get(keys[1]),
        data.get(keys[2]),
        data.get(keys[3]),
    )
    if env[2] is not None and env[3] is None:  # follows the shared state's URL
        env = (*env, shared_state_url())
    if _current is None or _current[0] != env:
        _current = (env, _open_cache())
    return _current[1]


def _open_cache() -> Worker | SharedCache:
    from gauge.model.cache.store import database_path
    from gauge.model.cache.worker import worker_for

    setting = cache_setting()
    if setting is None:
        return worker_for(database_path())
    return shared_cache(setting, worker_for(database_path()) if setting.near else None)


def _forget_current() -> None:
    # A forked child has workers of its own (worker.py starts them afresh).
    global _current
    _current = None


os.register_at_fork(after_in_child=_forget_current)


def _mark(output: ModelOutput, state: str) -> None:
    if output.metadata is None:
        output.metadata = {"cache": state}
    else:
        output.metadata["cache"] = state


def cache_config(value: object) -> GenerateConfig:
    """A config layer that sets only `cache` (from `generate(cache=...)`).

    Layers for True/False/None and expiry strings are built once and shared
    (configs are never changed in place; `merge` builds a new one).
    """
    simple = value is None or isinstance(value, bool | str)
    if simple and (layer := _layers.get(value)) is not None:
        return layer
    try:
        layer = GenerateConfig.model_validate({"cache": value})
    except ValueError as ex:
        raise ConfigError(
            f"cache={value!r} is not valid: pass True, False, an expiry such as '1W', "
            f"or a CachePolicy ({one_line(ex)})"
        ) from None
    if simple and len(_layers) < 64:
        _layers[value] = layer
    return layer


_layers: dict[object, GenerateConfig] = {}


def is_hit(output: ModelOutput) -> bool:
    """Whether `output` came from the cache (hits are not counted as token usage)."""
    return output.metadata is not None and output.metadata.get("cache") == "hit"
