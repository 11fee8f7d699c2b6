"""`gauge cache` on the shared cache: the management side of the Redis store.

`RedisStore` answers what the SQLite `Store` answers for api.py and explain.py
(sizes, summary, expired, prune, clear, entry, fingerprints). It walks the
entries with SCAN over PREFIX (never KEYS, which blocks the server), a page at a
time, and reads each page's headers in one pipeline (GETRANGE of the first
HEADER_BYTES, STRLEN); values are not transferred. Deletes use UNLINK, and only
names under PREFIX: whatever else the database holds (the shared rate state)
stays. A Redis that does not answer is a one-line CacheError naming the URL.

Sizes are the bytes Redis holds for an entry: its name and its stored string
(the header line and the value).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gauge.model.cache.redis_store import (
    ENV_URL,
    PATTERN,
    CacheSetting,
    decode,
    digest_of,
    parse_header,
    redis_name,
)
from gauge.model.cache.store import CacheEntry, CacheError

TIMEOUT = 5.0
PAGE = 500
"""Names per SCAN page, and per pipeline of header reads."""
HEADER_BYTES = 4096
"""Bytes read to find an entry's header line; a longer header is read whole."""


@dataclass(frozen=True, slots=True)
class _Info:
    name: bytes
    digest: bytes
    model: str
    created: float
    expires: float | None
    fingerprint: bytes
    size: int


class RedisStore:
    """The shared cache's entries in Redis, for the management commands."""

    def __init__(self, setting: CacheSetting) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.setting = setting
        self.client: Any = redis.Redis.from_url(
            setting.url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )

    def close(self) -> None:
        """Close the connection."""
        self.client.close()

    def sizes(self, models: Sequence[str] = ()) -> list[tuple[str, int]]:
        """(model, bytes) per model, largest first."""
        return [(model, size) for model, _, size in self.summary(models)]

    def summary(self, models: Sequence[str] = ()) -> list[tuple[str, int, int]]:
        """(model, entries, bytes) per model, largest first."""
        totals: dict[str, list[int]] = {}
        for info in self._entries():
            if not models or info.model in models:
                total = totals.setdefault(info.model, [0, 0])
                total[0] += 1
                total[1] += info.size
        rows = [(model, count, size) for model, (count, size) in totals.items()]
        return sorted(rows, key=lambda row: (-row[2], row[0]))

    def entry_sizes(self, keys: Sequence[bytes]) -> list[tuple[str, int]]:
        """(key hex, bytes) for the keys that are stored."""
        names = [redis_name(key) for key in keys]
        result = []
        for start in range(0, len(names), PAGE):
            chunk = names[start : start + PAGE]
            with self._calls():
                pipe = self.client.pipeline(transaction=False)
                for name in chunk:
                    pipe.strlen(name)
                lengths = pipe.execute()
            for key, name, length in zip(keys[start:], chunk, lengths, strict=False):
                if length:
                    result.append((key.hex(), len(name) + int(length)))
        return result

    def count(self) -> int:
        """Number of entries."""
        return sum(1 for _ in self._entries())

    def clear_model(self, model: str) -> int:
        """Delete every entry of `model`; the number deleted."""
        return self._unlink(info.name for info in self._entries() if info.model == model)

    def clear_all(self) -> int:
        """Delete every entry (nothing else in the database); the number deleted."""
        return self._unlink(name for page in self._pages() for name in page)

    def expired(self, models: Sequence[str] = (), now: float | None = None) -> list[CacheEntry]:
        """Entries whose expiry has passed and that Redis has not deleted yet."""
        now = time.time() if now is None else now
        found = [
            CacheEntry(info.digest.hex(), info.model, info.created, info.expires, info.size)
            for info in self._entries()
            if info.expires is not None
            and info.expires <= now
            and (not models or info.model in models)
        ]
        return sorted(found, key=lambda entry: entry.expires or 0.0)

    def prune(self, keys: Sequence[bytes] | None = None, now: float | None = None) -> int:
        """Delete `keys`, or (None) every expired entry; the number deleted."""
        if keys is None:
            return self._unlink(redis_name(bytes.fromhex(e.key)) for e in self.expired(now=now))
        return self._unlink(redis_name(key) for key in keys)

    def entry(self, key: bytes) -> tuple[str, float, float | None, bytes] | None:
        """(model, created, expires, fingerprint) of one entry."""
        with self._calls():
            raw = self.client.get(redis_name(key))
        entry = None if raw is None else decode(raw)
        if entry is None:
            return None
        return entry.model, entry.created, entry.expires, entry.fingerprint

    def fingerprints(self, model: str) -> Iterator[tuple[bytes, float, float | None, bytes]]:
        """(key, created, expires, fingerprint) of every entry of `model`."""
        for info in self._entries():
            if info.model == model:
                yield info.digest, info.created, info.expires, info.fingerprint

    def _pages(self) -> Iterator[list[bytes]]:
        """The entries' names, a SCAN page at a time."""
        cursor = 0
        while True:
            with self._calls():
                cursor, names = self.client.scan(cursor, match=PATTERN, count=PAGE)
            if names:
                yield [name for name in names if digest_of(name) is not None]
            if not cursor:
                return

    def _entries(self) -> Iterator[_Info]:
        """Each entry's header and size; names that vanished meanwhile are skipped."""
        for page in self._pages():
            with self._calls():
                pipe = self.client.pipeline(transaction=False)
                for name in page:
                    pipe.getrange(name, 0, HEADER_BYTES - 1)
                    pipe.strlen(name)
                replies = pipe.execute()
            for i, name in enumerate(page):
                info = self._info(name, replies[2 * i], int(replies[2 * i + 1]))
                if info is not None:
                    yield info

    def _info(self, name: bytes, start: bytes, length: int) -> _Info | None:
        if not length:  # expired or deleted since the SCAN
            return None
        cut = start.find(b"\n")
        if cut < 0 and length > len(start):  # a header longer than HEADER_BYTES
            with self._calls():
                start = self.client.get(name) or b""
            cut = start.find(b"\n")
        header = parse_header(start[:cut]) if cut >= 0 else None
        digest = digest_of(name)
        if header is None or digest is None:
            return None
        model, created, expires, fingerprint = header
        return _Info(name, digest, model, created, expires, fingerprint, len(name) + length)

    def _unlink(self, names: Iterator[bytes | str] | Any) -> int:
        deleted = 0
        batch: list[bytes | str] = []
        for name in names:
            batch.append(name)
            if len(batch) >= PAGE:
                deleted += self._unlink_batch(batch)
                batch = []
        if batch:
            deleted += self._unlink_batch(batch)
        return deleted

    def _unlink_batch(self, names: list[bytes | str]) -> int:
        with self._calls():
            return int(self.client.unlink(*names))

    def _calls(self) -> _Calls:
        return _Calls(self.setting)


class _Calls:
    """Turns a Redis failure into a one-line CacheError naming the (shown) URL."""

    def __init__(self, setting: CacheSetting) -> None:
        self.setting = setting

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, ex: BaseException | None, _: Any) -> None:
        if ex is None or not isinstance(ex, Exception) or isinstance(ex, CacheError):
            return
        text = str(ex).splitlines()[0] if str(ex) else type(ex).__name__
        raise CacheError(
            f"shared cache at {self.setting.shown} did not answer ({text}); "
            f"start Redis, or fix {ENV_URL} / GAUGE_SHARED_STATE"
        ) from None
