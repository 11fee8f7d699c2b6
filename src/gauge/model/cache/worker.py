"""One background thread per cache database, so the event loop never waits on disk.

Lookups and stores are queued; the thread takes everything queued at once,
answers all lookups with one query and writes all stores in one transaction,
then wakes each event loop once for the whole batch. Under concurrency the
thread hop is paid per batch, not per request.

If the database cannot be read (corrupt, not a database, unwritable directory)
the worker logs one warning and answers every lookup with a miss, so the run
continues uncached. Another process's lock (past the busy timeout) costs only
the lookups or stores of that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future as SyncFuture
from pathlib import Path
from typing import Any

from gauge.model.cache.store import CacheError, Row, Store

log = logging.getLogger("gauge.cache")

IDLE_EXIT_S = 30.0
"""An idle worker's thread exits after this long; the next request starts a new one."""
_MAX_BATCH = 2000

Found = tuple[float, bytes] | None


class Worker:
    """Owns the connection to one database and serves lookups and stores in batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.disabled: str | None = None
        """Why the cache is off for this run (an unreadable database), or None."""
        self._queue: queue.SimpleQueue[tuple[str, Any, Any, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._warned_busy = False

    def get(self, key: bytes) -> asyncio.Future[Found]:
        """(created, value) of the entry stored under `key`, or None."""
        return self._submit("get", key)

    def put(self, row: Row) -> asyncio.Future[None]:
        """Store one entry; resolves once it is committed (or was given up)."""
        return self._submit("put", row)

    def reset(self) -> None:
        """Close the connection and forget a disabled state (after `clear --all`)."""
        done: SyncFuture[None] = SyncFuture()
        with self._lock:
            running = self._thread is not None
            if running:
                self._queue.put(("reset", None, done, None))
        if running:
            done.result(timeout=30)
        self.disabled = None

    def _submit(self, op: str, arg: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((op, arg, future, loop))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"gauge-cache:{self.path.name}", daemon=True
                )
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._close()
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._serve(batch)
            except Exception as ex:  # never leave a caller waiting on a dead thread
                log.warning("response cache failed (%s); treating this batch as misses", ex)
                self._fail(batch)

    def _serve(self, batch: list[tuple[str, Any, Any, Any]]) -> None:
        gets = [item for item in batch if item[0] == "get"]
        puts = [item for item in batch if item[0] == "put"]
        results: dict[Any, list[tuple[Any, Any]]] = defaultdict(list)
        store = self._open()
        found: dict[bytes, tuple[float, bytes]] = {}
        if store is not None and gets:
            found = self._attempt(lambda: store.get_many([item[1] for item in gets]), {})
        if store is not None and puts:
            self._attempt(lambda: store.put_many([item[1] for item in puts]), None)
        for op, arg, future, loop in batch:
            if op == "reset":
                self._close()
                future.set_result(None)
            else:
                results[loop].append((future, found.get(arg) if op == "get" else None))
        for loop, answers in results.items():
            with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits
                loop.call_soon_threadsafe(_resolve, answers)

    def _fail(self, batch: list[tuple[str, Any, Any, Any]]) -> None:
        for op, _, future, loop in batch:
            if op == "reset":
                if not future.done():
                    future.set_result(None)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, [(future, None)])

    def _open(self) -> Store | None:
        if self.disabled is not None:
            return None
        store = self._store
        if store is not None and store.replaced():
            # Deleted or recreated by `gauge cache clear --all` in another process.
            self._close()
            store = None
        if store is None:
            try:
                store = self._store = Store(self.path)
            except CacheError as ex:
                self._disable(ex)
                return None
        return store

    def _attempt(self, action: Any, fallback: Any) -> Any:
        try:
            return action()
        except CacheError as ex:
            if "busy" in str(ex):
                if not self._warned_busy:
                    self._warned_busy = True
                    log.warning("%s; continuing without those cache lookups and stores", ex)
                return fallback
            self._disable(ex)
            return fallback

    def _disable(self, ex: CacheError) -> None:
        self.disabled = str(ex)
        self._close()
        log.warning("%s; continuing without the response cache", ex)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _resolve(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, value in answers:
        if not future.done():
            future.set_result(value)


_workers: dict[Path, Worker] = {}
_workers_lock = threading.Lock()
_inherited: list[Worker] = []


def _after_fork_in_child() -> None:
    # The parent's worker threads do not exist in a forked child, and SQLite
    # connections must not cross a fork: start afresh, and keep the inherited
    # objects referenced so their connections are never closed from here.
    global _workers_lock
    _inherited.extend(_workers.values())
    _workers.clear()
    _workers_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def worker_for(path: Path) -> Worker:
    """The process-wide worker of the database at `path`."""
    worker = _workers.get(path)
    if worker is None:
        with _workers_lock:
            worker = _workers.setdefault(path, Worker(path))
    return worker
