"""Managing the response cache: where it is, how big, and clearing and pruning it.

Every model shares one database file; `model` arguments select its entries
(`provider/name`, as `gauge cache list` shows them). With the shared cache on
(GAUGE_SHARED_CACHE, GAUGE_CACHE_URL: redis_store.py) the same functions act on
Redis instead; `clear` and `prune` also act on the near tier (the local file)
when there is one, so this machine cannot answer from what was deleted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gauge.errors import ConfigError
from gauge.model.cache.redis_admin import RedisStore
from gauge.model.cache.redis_store import cache_setting
from gauge.model.cache.store import (
    CACHE_DIR_ENV,
    DB_NAME,
    CacheEntry,
    CacheError,
    Store,
    cache_dir,
    database_path,
    remove_database,
)
from gauge.model.cache.worker import worker_for


def cache_path(model: str = "") -> Path:
    """The cache database file. Inspect AI keeps a folder per model; gauge keeps every
    model's entries in this one file, so `model` is accepted and gives the same path."""
    check_cache_dir()
    return database_path()


def check_cache_dir() -> None:
    """Raise a one-line ConfigError when the cache directory is a file, or inside one,
    or when the shared cache's setting is invalid (so an eval stops before a sample)."""
    setting = cache_setting()
    if setting is not None and not setting.near:
        return  # entries live in Redis only: no local file
    directory = cache_dir()
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir():
        return
    env = os.environ.get(CACHE_DIR_ENV)
    where = f"{CACHE_DIR_ENV}={env}" if env else f"the cache directory {directory}"
    what = "is a file" if existing == directory else f"is inside {existing}, which is a file"
    raise ConfigError(
        f"{where} {what}; point {CACHE_DIR_ENV} at a folder (gauge keeps {DB_NAME} in it)"
    )


def cache_size(
    subdirs: Sequence[str] = (), files: Sequence[CacheEntry | str | Path] = ()
) -> list[tuple[str, int]]:
    """(model, bytes) per model, largest first, then (key, bytes) per entry key in `files`.

    `subdirs` limits the models reported (empty: all); `files` names entries
    by their hex key, as `gauge cache list --expired` prints them.
    """
    store = open_store()
    try:
        sizes = store.sizes(list(subdirs)) if subdirs or not files else []
        if files:
            sizes.extend(store.entry_sizes([_key_bytes(_entry_key(k)) for k in files]))
        return sizes
    finally:
        store.close()


def cache_models() -> list[tuple[str, int, int]]:
    """(model, entries, bytes) per model, largest first."""
    store = open_store()
    try:
        return store.summary()
    finally:
        store.close()


def shared_store() -> str | None:
    """Which shared store the management functions act on, in words; None: the local file."""
    setting = cache_setting()
    if setting is None:
        return None
    if setting.near:
        return f"{setting.describe()}, near tier {database_path()}"
    return setting.describe()


def cache_clear(model: str = "") -> bool:
    """Delete `model`'s entries, or (no model) delete and recreate the whole database.

    Clearing everything also repairs a corrupt database. True when something
    was deleted. With the shared cache: the entries in Redis (all of gauge's,
    nothing else), and the near tier's too.
    """
    setting = cache_setting()
    if setting is None:
        return _clear_local(model)
    store = RedisStore(setting)
    try:
        deleted = (store.clear_model(model) if model else store.clear_all()) > 0
    finally:
        store.close()
    if setting.near:
        deleted = _clear_local(model) or deleted
    return deleted


def _clear_local(model: str) -> bool:
    path = cache_path()
    if model:
        store = Store(path, create=False)
        try:
            return store.clear_model(model) > 0
        finally:
            store.close()
    existed = path.exists()
    # Our own worker holds the file open: close it first so it reopens the new file.
    worker_for(path).reset()
    remove_database(path)
    Store(path).close()
    return existed


def cache_list_expired(filter_by: Sequence[str] = ()) -> list[CacheEntry]:
    """Entries whose expiry has passed (of the models in `filter_by`; empty: all)."""
    store = open_store()
    try:
        return store.expired(list(filter_by))
    finally:
        store.close()


def cache_prune(files: Sequence[CacheEntry | str | Path] = ()) -> int:
    """Delete `files` (entries, or their hex keys), or (empty) every expired entry; the count.

    Named `files` as in Inspect AI, whose entries are files: `cache_prune(files=
    cache_list_expired())` reads the same here. A Path names an entry by its file
    name (the hex key). With the shared cache and a near tier: the count in both.
    """
    keys = [_key_bytes(_entry_key(e)) for e in files]
    stores: list[Store | RedisStore] = [open_store()]
    setting = cache_setting()
    if setting is not None and setting.near:
        stores.append(Store(cache_path(), create=False))
    count = 0
    for store in stores:
        try:
            count += store.prune(keys) if keys else store.prune()
        finally:
            store.close()
    return count


def open_store() -> Store | RedisStore:
    """The store the management functions read: Redis with the shared cache on, else
    the local database (a missing one is not created: it is simply empty)."""
    setting = cache_setting()
    if setting is not None:
        return RedisStore(setting)
    # Reading commands never create a database; an absent one is simply empty.
    return Store(cache_path(), create=False)


def _entry_key(entry: CacheEntry | str | Path) -> str:
    if isinstance(entry, CacheEntry):
        return entry.key
    return entry.name if isinstance(entry, Path) else entry


def _key_bytes(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CacheError(
            f"{key!r} is not a cache key; "
            "use a 64-hex-digit key as `gauge cache list --expired` prints it"
        )
    return raw
