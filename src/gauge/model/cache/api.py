"""Managing the response cache: where it is, how big, and clearing and pruning it.

Every model shares one database file; `model` arguments select its entries
(`provider/name`, as `gauge cache list` shows them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gauge.model.cache.store import (
    CacheEntry,
    CacheError,
    Store,
    database_path,
    remove_database,
)
from gauge.model.cache.worker import worker_for


def cache_path(model: str = "") -> Path:
    """The cache database file (shared by every model, so `model` does not change it)."""
    return database_path()


def cache_size(subdirs: Sequence[str] = (), files: Sequence[str] = ()) -> list[tuple[str, int]]:
    """(model, bytes) per model, largest first, then (key, bytes) per entry key in `files`.

    `subdirs` limits the models reported (empty: all); `files` names entries
    by their hex key, as `gauge cache list --expired` prints them.
    """
    store = _open()
    try:
        sizes = store.sizes(list(subdirs)) if subdirs or not files else []
        if files:
            sizes.extend(store.entry_sizes([_key_bytes(k) for k in files]))
        return sizes
    finally:
        store.close()


def cache_models() -> list[tuple[str, int, int]]:
    """(model, entries, bytes) per model, largest first."""
    store = _open()
    try:
        return store.summary()
    finally:
        store.close()


def cache_clear(model: str = "") -> bool:
    """Delete `model`'s entries, or (no model) delete and recreate the whole database.

    Clearing everything also repairs a corrupt database. True when something
    was deleted.
    """
    path = database_path()
    if model:
        store = _open()
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
    store = _open()
    try:
        return store.expired(list(filter_by))
    finally:
        store.close()


def cache_prune(entries: Sequence[CacheEntry | str] = ()) -> int:
    """Delete `entries` (entries or hex keys), or (empty) every expired entry; the count."""
    store = _open()
    try:
        if not entries:
            return store.prune()
        keys = [_key_bytes(e.key if isinstance(e, CacheEntry) else e) for e in entries]
        return store.prune(keys)
    finally:
        store.close()


def _open() -> Store:
    # Reading commands never create a database; an absent one is simply empty.
    return Store(database_path(), create=False)


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
