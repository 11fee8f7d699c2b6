"""The shared response cache in Redis: the setting, and how an entry is stored there.

    GAUGE_SHARED_CACHE=redis     entries live in Redis (no local file)
    GAUGE_SHARED_CACHE=near      in Redis, with the local SQLite file as a near tier
    GAUGE_SHARED_CACHE=off       the local SQLite file only (the default)
    GAUGE_CACHE_URL=redis://...  the Redis to use; default: the shared state's URL
                                 (GAUGE_SHARED_STATE, `--shared-state`). Set alone,
                                 it means GAUGE_SHARED_CACHE=redis.

One Redis string per entry, named PREFIX + the key's 64 hex digits (the SQLite
store's 32-byte SHA-256 key), holding one JSON header line and the value:

    {"model":"openai/gpt-4o","created":1764990000.1,"expires":1765594800.1,"fingerprint":{...}}
    {...the ModelOutput as JSON, byte for byte what the SQLite store keeps...}

The header carries what `gauge cache list` and `explain` need (model, created,
expires, the per-component fingerprint). An entry with an expiry gets it as its
TTL (SET ... PXAT), so Redis deletes it then; one without never expires. Values
hold outputs only (ModelOutput's response headers are never dumped) and names
are digests, so no credential reaches Redis.

redis_tier.py serves lookups and stores on the event loop; redis_admin.py the
management commands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from gauge.errors import ConfigError, GaugeError, MissingExtra

ENV_MODE = "GAUGE_SHARED_CACHE"
ENV_URL = "GAUGE_CACHE_URL"
MODES = ("off", "redis", "near")
PREFIX = "gauge:v1:cache:"
"""Every entry's name starts with this (v1: the layout above)."""
PATTERN = PREFIX + "*"

Row = tuple[bytes, str, float, float | None, bytes, bytes]
"""(key, model, created, expires, fingerprint, value), as the SQLite store takes it."""


@dataclass(frozen=True, slots=True)
class CacheSetting:
    """Where the shared cache lives, and whether the local file is kept as a near tier."""

    url: str
    near: bool = False

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        from gauge.model.rate.shared import shown_url

        return shown_url(self.url)

    def describe(self) -> str:
        """Which store, in words: `Redis at redis://host:6379/0 (gauge:v1:cache:*)`."""
        return f"Redis at {self.shown} ({PATTERN})"


def cache_setting() -> CacheSetting | None:
    """The shared cache the environment asks for, or None (the local file only)."""
    mode = os.environ.get(ENV_MODE, "").strip().lower()
    url = os.environ.get(ENV_URL, "").strip()
    if mode == "off" or (not mode and not url):
        return None
    if mode not in ("", "redis", "near"):
        raise ConfigError(
            f"{ENV_MODE}={mode!r} is not valid: use redis (entries in Redis), near (Redis "
            "plus the local file as a near tier) or off"
        )
    url = url or shared_state_url() or ""
    if not url:
        raise ConfigError(
            f"{ENV_MODE}={mode} needs a Redis URL: set {ENV_URL}=redis://host:6379/0, or "
            "GAUGE_SHARED_STATE (the shared rate state's URL, used by default)"
        )
    from gauge.model.rate.shared import SCHEMES, shown_url

    if urlsplit(url).scheme not in SCHEMES:
        raise ConfigError(
            f"shared cache URL {shown_url(url)!r} must start with redis://, rediss:// or "
            "unix:// (e.g. redis://localhost:6379/0)"
        )
    try:
        import redis  # noqa: F401
    except ImportError:
        raise MissingExtra(
            "the shared cache needs the redis client: pip install 'gauge[redis]'"
        ) from None
    return CacheSetting(url, near=mode == "near")


def shared_state_url() -> str | None:
    """The shared rate state's URL (`--shared-state`, GAUGE_SHARED_STATE), or None.

    When that Redis failed its start-up check, the environment's URL as written:
    the cache then warns once and goes on without it, as when Redis goes away later.
    """
    from gauge.model.rate import shared

    try:
        setting = shared.current()
    except GaugeError:
        setting = None
    return setting.url if setting is not None else os.environ.get(shared.ENV, "").strip() or None


def redis_name(digest: bytes) -> str:
    """The Redis name of the entry stored under `digest`."""
    return PREFIX + digest.hex()


def digest_of(name: bytes | str) -> bytes | None:
    """The 32-byte key of a Redis entry name, or None for a name that is not one."""
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    if not text.startswith(PREFIX):
        return None
    try:
        digest = bytes.fromhex(text[len(PREFIX) :])
    except ValueError:
        return None
    return digest if len(digest) == 32 else None


def encode(row: Row) -> bytes:
    """The stored bytes of one entry: the header line, then the value."""
    _, model, created, expires, fingerprint, value = row
    header = orjson.dumps(
        {
            "model": model,
            "created": created,
            "expires": expires,
            "fingerprint": orjson.Fragment(fingerprint),
        }
    )
    return header + b"\n" + value


@dataclass(frozen=True, slots=True)
class RedisEntry:
    """One entry read back from Redis."""

    model: str
    created: float
    expires: float | None
    fingerprint: bytes
    value: bytes

    def row(self, digest: bytes) -> Row:
        """The SQLite store's row for this entry (a near-tier copy)."""
        return (digest, self.model, self.created, self.expires, self.fingerprint, self.value)


def decode(raw: bytes) -> RedisEntry | None:
    """An entry from its stored bytes; None for bytes that are not one (a miss)."""
    cut = raw.find(b"\n")
    header = parse_header(raw[:cut] if cut >= 0 else b"")
    if header is None:
        return None
    model, created, expires, fingerprint = header
    return RedisEntry(model, created, expires, fingerprint, raw[cut + 1 :])


def parse_header(line: bytes) -> tuple[str, float, float | None, bytes] | None:
    """(model, created, expires, fingerprint JSON) from a header line, or None."""
    try:
        head: Any = orjson.loads(line)
        model, created, expires = head["model"], head["created"], head["expires"]
        fingerprint = orjson.dumps(head["fingerprint"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    numbers = (int, float)
    if (
        not isinstance(model, str)
        or not isinstance(created, numbers)
        or not (expires is None or isinstance(expires, numbers))
    ):
        return None
    return model, float(created), None if expires is None else float(expires), fingerprint
