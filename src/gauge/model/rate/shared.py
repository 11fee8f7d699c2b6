"""The one setting that shares every connection key's rate state through Redis.

    GAUGE_SHARED_STATE=redis://host:6379/0              environment (any process)
    gauge eval --shared-state redis://host:6379/0        command line
    eval(..., shared_state="redis://host:6379/0")        an eval from Python
    gauge.model.shared.use("redis://host:6379/0")        any Model from Python

With it, the processes (and machines) that use one connection key share its
request and token budgets, its key-wide pause, its early stop after identical
fatal errors and its concurrency limit (shared_key.py). Without it everything
stays in process, and `redis` is never imported. This module is imported by
keys.py on every run, so it only reads the setting: the Redis side is loaded
when a setting is in force.

Redis unreachable at start is a one-line ConfigError naming the URL, unless the
fallback is "local" (`--shared-state-fallback local`,
GAUGE_SHARED_STATE_FALLBACK=local, `fallback="local"`): then a warning, local
state, and sharing starts once Redis answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from gauge.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    from gauge.model.rate.parts import KeyParts

ENV = "GAUGE_SHARED_STATE"
ENV_FALLBACK = "GAUGE_SHARED_STATE_FALLBACK"
FALLBACKS = ("error", "local")
SCHEMES = ("redis", "rediss", "unix")
CHECK_TIMEOUT = 2.0
"""Seconds the start-up check waits for Redis to answer."""

log = logging.getLogger("gauge.shared")


@dataclass(frozen=True, slots=True)
class SharedSetting:
    """Where the shared state lives, and what to do when it cannot be reached at start."""

    url: str
    fallback: str = "error"
    reachable: bool = True
    """Whether Redis answered the start-up check (False only with fallback "local")."""

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        return shown_url(self.url)


_setting: SharedSetting | None = None
_from_env = True
"""Whether the setting still comes from the environment (no use() call yet)."""
_env_read: tuple[str, str] | None = None


def shown_url(url: str) -> str:
    """`url` with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def use(url: str | None, fallback: str = "error", check: bool = True) -> SharedSetting | None:
    """Share every connection key's rate state through the Redis at `url` (None: stop).

    Applies to connection keys created from now on (keys live per event loop, so a
    new `asyncio.run` or eval picks it up). With `check`, Redis must answer now:
    else a ConfigError naming the URL, or with `fallback="local"` a warning and
    local state until it answers.
    """
    global _setting, _from_env
    _from_env = False
    _setting = None if url is None else _resolve(url, fallback, check)
    return _setting


def current() -> SharedSetting | None:
    """The setting in force: use()'s, else GAUGE_SHARED_STATE's (checked once)."""
    global _setting, _env_read
    if not _from_env:
        return _setting
    env = os.environ.get(ENV, "").strip(), os.environ.get(ENV_FALLBACK, "").strip()
    if env != _env_read:
        _env_read = env
        _setting = _resolve(env[0], env[1] or "error", True) if env[0] else None
    return _setting


def prepare(url: str | None, fallback: str | None) -> SharedSetting | None:
    """What an eval does first: `url` (else the environment's) in force and checked,
    so an unreachable Redis stops the run before any sample. Given, they are in
    force for the rest of the process, as with use()."""
    if fallback is not None and url is None:
        url = os.environ.get(ENV, "").strip() or None
    if url is None:
        return current()
    return use(url, fallback or os.environ.get(ENV_FALLBACK, "").strip() or "error")


def _resolve(url: str, fallback: str, check: bool) -> SharedSetting:
    if fallback not in FALLBACKS:
        raise ConfigError(
            f"shared state fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}"
        )
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"shared state URL {shown_url(url)!r} must start with redis://, rediss:// or "
            "unix:// (e.g. redis://localhost:6379/0)"
        )
    problem = _ping(url) if check else None
    if problem is None:
        return SharedSetting(url, fallback)
    if fallback == "error":
        raise ConfigError(
            f"shared state: cannot reach Redis at {shown_url(url)} ({problem}); start it, "
            "fix the URL, or pass --shared-state-fallback local to run with local state"
        )
    log.warning(
        "gauge: shared state: cannot reach Redis at %s (%s); running with local rate "
        "state, sharing once it answers",
        shown_url(url),
        problem,
    )
    return SharedSetting(url, fallback, reachable=False)


def _ping(url: str) -> str | None:
    """None when Redis at `url` answers PING, else why not (one line)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise MissingExtra(
            "shared state needs the redis client: pip install 'gauge[redis]'"
        ) from None
    client = redis.Redis.from_url(
        url,
        socket_timeout=CHECK_TIMEOUT,
        socket_connect_timeout=CHECK_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except Exception as ex:  # any failure to answer is "unreachable", said in one line
        text = str(ex).splitlines()[0] if str(ex) else ""
        return f"{type(ex).__name__}: {text}" if text else type(ex).__name__
    finally:
        client.close()
    return None


def parts_for(
    name: str, start: int, clock: Callable[[], float] = time.monotonic, maximum: int = 256
) -> KeyParts | None:
    """The shared parts of connection key `name` (None: in process, the default)."""
    setting = current()
    if setting is None:
        return None
    from gauge.model.rate.shared_key import build_parts

    return build_parts(setting, name, start, clock, maximum)
