"""The shared cache on the event loop: lookups and stores in Redis, batched per loop turn.

`SharedCache` stands where the local `Worker` stands in the generate stage and in
scoring (stage.py's `current_worker`):

- A lookup first asks the near tier (the local SQLite file, with
  GAUGE_SHARED_CACHE=near) exactly as a local-only run would; an entry found
  there and fresh for the lookup's policy is the answer. Otherwise it asks Redis:
  every lookup of one event-loop turn joins one MGET (redis.asyncio, so the loop
  never blocks), and a Redis entry newer than the near tier's is copied there.
- A store writes both tiers. The stores of one loop turn go to Redis in one
  pipeline (SET, with PXAT = the entry's expiry); a miss returns once Redis
  acknowledged it, so another process finds it from then on. Without a near tier
  this process reads its own stores while they are in flight.
- Redis not answering (down at start, or later): one warning per process, and
  the run goes on with the near tier, or with no cache. For RETRY_S seconds no
  call is tried; then the next lookup or store tries again (`log.info` when it
  is back). A lookup never fails a sample: at worst it is a miss.

Connections live per event loop (an asyncio connection cannot cross loops) and
close when their loop shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from gauge.model.cache.redis_store import CacheSetting, RedisEntry, Row, decode, encode, redis_name

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gauge.model.cache.worker import Worker

log = logging.getLogger("gauge.cache")

TIMEOUT = 1.0
"""Seconds a Redis call may take before Redis counts as unreachable."""
RETRY_S = 5.0
"""After Redis did not answer, how long lookups and stores skip it before trying again."""
_MGET_CHUNK = 1000

Found = tuple[float, bytes] | None
_warned = False
"""Whether this process has warned that the shared cache is unreachable."""


class SharedCache:
    """The response cache in Redis, with the local database as an optional near tier."""

    disabled: str | None = None
    """Never set: with Redis away, lookups miss (or use the near tier) and the run goes on."""

    def __init__(self, setting: CacheSetting, near: Worker | None) -> None:
        self.setting = setting
        self.near = near
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Link]
        self._links = weakref.WeakKeyDictionary()
        self._pending: dict[bytes, tuple[float, bytes]] = {}
        """Without a near tier: stores sent and not yet acknowledged, key -> (created, value)."""
        self._down = False
        self._retry_at = 0.0

    async def find(self, digest: bytes, seconds: float | None) -> Found:
        """(created, value) of the entry under `digest`, or None.

        `seconds` is the lookup policy's expiry: a near-tier entry older than that
        is not the answer, so Redis is asked for a newer one (another process may
        have stored it).
        """
        near = self.near
        local: Found = None
        if near is not None:
            answered, local = near.lookup(digest)
            if not answered:
                local = await near.get(digest)
            if local is not None and (seconds is None or time.time() - local[0] < seconds):
                return local
        elif (pending := self._pending.get(digest)) is not None:
            return pending
        return self._take(digest, await self._link().get(digest), local)

    async def get_many(self, keys: Sequence[bytes]) -> list[Found]:
        """Entries of many keys, in order: the near tier first, one MGET for the rest."""
        near = self.near
        if near is not None:
            found = await near.get_many(keys)
        else:
            found = [self._pending.get(key) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            link = self._link()
            entries = await asyncio.gather(*(link.get(keys[i]) for i in missing))
            for i, entry in zip(missing, entries, strict=True):
                found[i] = self._take(keys[i], entry, None)
        return found

    def put(self, row: Row) -> asyncio.Future[Any]:
        """Store one entry in Redis (and the near tier); resolves once both have it,
        or Redis was given up on."""
        stored = self._link().put(row)
        near = self.near
        if near is not None:
            return asyncio.gather(near.put(row), stored)
        if not stored.done():  # sent (not skipped with Redis away): read it meanwhile
            digest, entry = row[0], (row[2], row[5])
            self._pending[digest] = entry
            stored.add_done_callback(lambda _: self._forget(digest, entry))
        return stored

    def _take(self, digest: bytes, entry: RedisEntry | None, local: Found) -> Found:
        """The newer of Redis's entry and the near tier's; Redis's is copied near."""
        if entry is None or (local is not None and local[0] >= entry.created):
            return local
        if self.near is not None:
            self.near.put(entry.row(digest))
        return entry.created, entry.value

    def _forget(self, digest: bytes, entry: tuple[float, bytes]) -> None:
        if self._pending.get(digest) is entry:  # not replaced by a later store
            del self._pending[digest]

    def _link(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None or link.closed:
            link = self._links[loop] = _Link(self, loop)
        return link

    def available(self) -> bool:
        """Whether to ask Redis now (not within RETRY_S of it failing to answer)."""
        return not self._down or time.monotonic() >= self._retry_at

    def lost(self, ex: BaseException) -> None:
        """Redis did not answer: skip it for RETRY_S; the first time, one warning."""
        global _warned
        self._retry_at = time.monotonic() + RETRY_S
        if self._down:
            return
        self._down = True
        if not _warned:
            _warned = True
            rest = "the local cache only" if self.near is not None else "no response cache"
            log.warning(
                "gauge: shared cache at %s unreachable (%s); going on with %s, "
                "trying again every %.0f s",
                self.setting.shown,
                _why(ex),
                rest,
                RETRY_S,
            )

    def answered(self) -> None:
        """Redis answered: back to using it, if it was away."""
        if self._down:
            self._down = False
            log.info("gauge: shared cache at %s is back", self.setting.shown)


class _Link:
    """One event loop's connection to the shared cache, and this turn's batches."""

    def __init__(self, owner: SharedCache, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.closed = False
        self._client: Redis | None = None
        self._gets: dict[bytes, list[asyncio.Future[RedisEntry | None]]] = {}
        self._puts: list[tuple[Row, asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, digest: bytes) -> asyncio.Future[RedisEntry | None]:
        """The entry under `digest`, read with this turn's other lookups in one MGET."""
        future: asyncio.Future[RedisEntry | None] = self.loop.create_future()
        if not self.owner.available():
            future.set_result(None)
            return future
        gets = self._gets
        if not gets:
            self.loop.call_soon(self._send_gets)
        waiting = gets.get(digest)
        if waiting is None:
            gets[digest] = [future]
        else:
            waiting.append(future)
        return future

    def put(self, row: Row) -> asyncio.Future[None]:
        """Store `row`, with this turn's other stores in one pipeline."""
        future: asyncio.Future[None] = self.loop.create_future()
        if not self.owner.available():
            future.set_result(None)
            return future
        if not self._puts:
            self.loop.call_soon(self._send_puts)
        self._puts.append((row, future))
        return future

    def _send_gets(self) -> None:
        batch, self._gets = self._gets, {}
        self._spawn(self._mget(batch))

    def _send_puts(self) -> None:
        batch, self._puts = self._puts, []
        self._spawn(self._store(batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mget(self, batch: dict[bytes, list[asyncio.Future[RedisEntry | None]]]) -> None:
        digests = list(batch)
        values: list[Any] = [None] * len(digests)
        try:
            client = self.client()
            names = [redis_name(digest) for digest in digests]
            got: list[Any] = []
            for start in range(0, len(names), _MGET_CHUNK):
                got.extend(await client.mget(names[start : start + _MGET_CHUNK]))
            values = got
            self.owner.answered()
        except Exception as ex:  # unreachable, timeout, server error: misses
            self.owner.lost(ex)
        finally:  # every lookup is answered, even when the loop shuts down
            for digest, raw in zip(digests, values, strict=True):
                entry = None if raw is None else decode(raw)
                for future in batch[digest]:
                    if not future.done():
                        future.set_result(entry)

    async def _store(self, batch: list[tuple[Row, asyncio.Future[None]]]) -> None:
        try:
            client = self.client()
            now = time.time()
            async with client.pipeline(transaction=False) as pipe:
                for row, _ in batch:
                    expires = row[3]
                    if expires is None:
                        pipe.set(redis_name(row[0]), encode(row))
                    elif expires > now:  # Redis deletes it at its expiry
                        pipe.set(redis_name(row[0]), encode(row), pxat=int(expires * 1000))
                await pipe.execute()
            self.owner.answered()
        except Exception as ex:  # not stored; the run goes on
            self.owner.lost(ex)
        finally:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def client(self) -> Redis:
        """This loop's client (made on first use, closed when the loop shuts down)."""
        if self._client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No retries of the client's own: a failed call is reported at once.
            self._client = Redis.from_url(
                self.owner.setting.url,
                socket_timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            self._spawn(self._keep(self._client))
        return self._client

    async def _keep(self, client: Redis) -> None:
        """Wait for the loop to shut down, then close the client."""
        try:
            await asyncio.Event().wait()
        finally:
            self.closed = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await client.aclose()


def _why(ex: BaseException) -> str:
    text = str(ex).splitlines()[0] if str(ex) else ""
    return f"{type(ex).__name__}: {text}" if text else type(ex).__name__


_caches: dict[tuple[str, object], SharedCache] = {}


def shared_cache(setting: CacheSetting, near: Worker | None) -> SharedCache:
    """The process-wide shared cache of `setting` (with `near` as its near tier)."""
    key = (setting.url, None if near is None else near.path)
    cache = _caches.get(key)
    if cache is None or cache.near is not near:
        cache = _caches[key] = SharedCache(setting, near)
    return cache


# A forked child makes its own (its near-tier workers are new: worker.py).
os.register_at_fork(after_in_child=_caches.clear)
