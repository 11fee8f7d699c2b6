"""The cache stage of the generate pipeline.

It sits right inside the total deadline and outside retries and the connection
slot: a hit returns at once without taking a slot, and a miss stores the final
output after whatever retries it took. The lookup runs on the database's
worker thread (see worker.py), never on the event loop.

Hits carry `metadata["cache"] = "hit"`; outputs that went to the model with the
cache on carry "miss". Outputs with an error or a content_filter stop are
returned but never stored.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import orjson

from gauge.errors import ConfigError, one_line
from gauge.model.cache.key import CacheKey, request_key
from gauge.model.cache.policy import CachePolicy, as_policy
from gauge.model.config import GenerateConfig
from gauge.model.output import ModelOutput

if TYPE_CHECKING:
    from gauge.model.api import ModelAPI
    from gauge.model.cache.worker import Worker
    from gauge.model.pipeline import Call, ModelRequest, Stage


def response_cache(api: ModelAPI) -> Stage:
    """A stage that answers from the cache when `config.cache` is on."""

    def wrap(call: Call) -> Call:
        async def stage(request: ModelRequest) -> ModelOutput:
            setting = request.config.cache
            if not setting:
                return await call(request)
            policy = setting if isinstance(setting, CachePolicy) else as_policy(setting)
            worker = current_worker()
            if policy is None or worker.disabled is not None:
                return await call(request)
            key = request_key(
                api.name,
                api.model_name,
                api.base_url,
                request.input,
                request.tools,
                request.tool_choice,
                request.config,
                policy,
                model_args=api.model_args,
            )
            found = await worker.get(key.digest)
            if found is not None and is_fresh(found[0], policy):
                output = ModelOutput.model_validate_json(found[1])
                _mark(output, "hit")
                return output
            output = await call(request)
            if storable(output):
                await worker.put(entry_row(key, policy, output))
            _mark(output, "miss")
            return output

        return stage

    return wrap


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


_current: tuple[tuple[str | None, str | None, int], Worker] | None = None


def current_worker() -> Worker:
    """The worker of the database the environment points at now (in this process)."""
    global _current
    env = (os.environ.get("GAUGE_CACHE_DIR"), os.environ.get("XDG_CACHE_HOME"), os.getpid())
    if _current is None or _current[0] != env:
        from gauge.model.cache.store import database_path
        from gauge.model.cache.worker import worker_for

        _current = (env, worker_for(database_path()))
    return _current[1]


def _mark(output: ModelOutput, state: str) -> None:
    if output.metadata is None:
        output.metadata = {"cache": state}
    else:
        output.metadata["cache"] = state


def cache_config(value: object) -> GenerateConfig:
    """A config layer that sets only `cache` (from `generate(cache=...)`)."""
    try:
        return GenerateConfig.model_validate({"cache": value})
    except ValueError as ex:
        raise ConfigError(
            f"cache={value!r} is not valid: pass True, False, an expiry such as '1W', "
            f"or a CachePolicy ({one_line(ex)})"
        ) from None


def is_hit(output: ModelOutput) -> bool:
    """Whether `output` came from the cache (hits are not counted as token usage)."""
    return output.metadata is not None and output.metadata.get("cache") == "hit"
