"""Lookups on the caller's thread, stores on one background thread per database.

A lookup (`lookup`, `get`) is answered on the thread that asks, without waiting:

1. from the stores queued and not yet committed (a process reads its own writes);
2. else from a read-only connection that thread keeps open (busy timeout 0, pages
   mmapped): a point read takes microseconds, every read is a fresh WAL snapshot
   (other processes' commits are seen) and a writer's lock never blocks it. At
   most every RECHECK_S the reader checks that the path still names the file it
   opened, so `gauge cache clear --all` from another process (a new file) is
   noticed; this process's own `clear --all` retires every reader at once.

While lookups come several per loop turn (concurrent callers, such as an eval's
samples in flight), `get` holds each to the end of the turn and reads them all at
once on the loop (one query per 500 keys, ~3x cheaper a key than one query each);
one caller alone is answered at once (PROBE_EVERY says how the worker tells).

The thread path answers instead before this process's worker has opened (created
and checked: schema, WAL) the database once, when a read fails (replaced file,
lock, corruption: the worker then reopens, waits or disables as it always did),
and while stores are queued or the worker thread is on a batch, for the first
JOIN_S of it: then the lookup joins its next batch, one hop for all.

Stores go to the worker thread: each event loop hands over what it asked for in
one turn at once; the thread takes everything queued, answers the batch's lookups
with one query (before its stores, which may wait on a lock), writes all stores in
one transaction, and wakes each event loop once per answer set.

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
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future as SyncFuture
from pathlib import Path
from typing import Any

from gauge.model.cache.store import CacheError, Row, Store

log = logging.getLogger("gauge.cache")

IDLE_EXIT_S = 30.0
"""An idle worker's thread exits after this long; the next request starts a new one."""
_MAX_BATCH = 2000

Found = tuple[float, bytes] | None


_UNANSWERED: tuple[bool, Found] = (False, None)
_MISS: tuple[bool, Found] = (True, None)
_READ = "SELECT created, value FROM entries WHERE key = ?"
_READ_MMAP = 256 << 20
JOIN_S = 0.1
"""While stores are queued, or the thread has been on its current batch for less than
this, lookups join its queue (one hop for all) instead of reading on the loop: a read
releases the GIL, and with the thread busy writing, getting it back cost more than
the batched hop (an all-miss eval ran ~30 % slower). Past this (a store waiting on
another process's lock), lookups read on the loop again: WAL readers never wait for
a writer."""
PROBE_EVERY = 32
"""After this many lookups in a row answered at once, the next one waits for the end
of the loop turn. That lets the loop run (an all-hit run never suspends otherwise:
progress display, Ctrl-C, other tasks) and shows whether others look up in the same
turn: if so (an eval's samples in flight), each turn's lookups share one read, ~3x
cheaper a key than one read each; when a turn has only one, back to reading at once."""
RECHECK_S = 0.001
"""How often (at most) a reader checks that the path still names the file it opened:
a `clear --all` from another process is noticed within this long. A stat per lookup
was ~5 % of a hit."""


class _Reader:
    """One thread's read-only connection to the file the worker checked."""

    __slots__ = ("conn", "generation", "inode", "stat_at")

    def __init__(self, conn: sqlite3.Connection, inode: int, generation: int) -> None:
        self.conn = conn
        self.inode = inode
        """The file it opened (st_ino); another file at the path: `clear --all`."""
        self.generation = generation
        self.stat_at = -1.0
        """time.monotonic() of the last check that the path still names that file."""


class _Readers(threading.local):
    reader: _Reader | None = None


class Worker:
    """Owns the writing connection to one database and serves stores in batches;
    lookups read on the caller's thread (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.disabled: str | None = None
        """Why the cache is off for this run (an unreadable database), or None."""
        self._queue: queue.SimpleQueue[tuple[str, Any, Any, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._warned_busy = False
        self._file = os.fspath(path)
        self._uri = path.absolute().as_uri() + "?mode=ro"
        self._checked: int | None = None
        """Inode of the file this process's worker opened and checked (schema, WAL);
        readers open only that file. None: not yet, or to be checked again."""
        self._readers = _Readers()
        self._generation = 0
        """Bumped by `reset`: this process's `clear --all` retires every reader at once."""
        self._pending: dict[bytes, tuple[float, bytes]] = {}
        """Stores queued and not yet committed (or given up): key -> (created, value)."""
        self._pending_lock = threading.Lock()
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[str, Any, Any, Any]]] = {}
        """Per event loop: what it asked the thread for in its current turn."""
        self._turns: dict[asyncio.AbstractEventLoop, list[tuple[bytes, Any]]] = {}
        """Per event loop: the lookups waiting for the end of its current turn."""
        self._batching = False
        """Lookups come several per loop turn: share one read at the end of the turn."""
        self._in_a_row = 0
        self._busy_since: float | None = None
        """When the thread started its current batch, or was given work (a store, or
        requests handed over) while idle (monotonic); None while it has nothing to do."""

    def lookup(self, key: bytes) -> tuple[bool, Found]:
        """(answered, found) for `key`, read on this thread without waiting.

        found: (created, value) of the entry, or None. Not answered (False, None)
        when `get` should answer: the worker thread, or a read shared with the
        other lookups of this loop turn (see `get`).
        """
        found = self._pending.get(key)
        if found is not None:
            return True, found
        if self.disabled is not None:
            return _MISS
        if self._batching:
            return _UNANSWERED
        self._in_a_row += 1
        if self._in_a_row >= PROBE_EVERY:  # see whether others look up in this turn
            self._in_a_row = 0
            self._batching = True
            return _UNANSWERED
        return self._read(key)

    def _read(self, key: bytes) -> tuple[bool, Found]:
        reader = self._reader()
        if reader is None:
            return _UNANSWERED
        try:
            rows = reader.conn.execute(_READ, (key,)).fetchall()  # all: resets the statement
        except sqlite3.Error:
            self._read_failed()
            return _UNANSWERED
        return (True, rows[0]) if rows else _MISS

    def lookup_many(self, keys: Sequence[bytes]) -> list[Found] | None:
        """`lookup` of many keys at once (one query per 500), in order; None when
        the worker thread should answer them (then await `get_many`)."""
        if self.disabled is not None:
            return [None] * len(keys)
        pending = self._pending
        unknown = [key for key in keys if key not in pending]
        read: dict[bytes, tuple[float, bytes]] = {}
        if unknown:
            reader = self._reader()
            if reader is None:
                return None
            try:
                read = Store.read_many(reader.conn, unknown)
            except sqlite3.Error:
                self._read_failed()
                return None
        return [pending.get(key) or read.get(key) for key in keys]

    def get(self, key: bytes) -> asyncio.Future[Found]:
        """(created, value) of the entry stored under `key`, or None.

        Answered at once when it can be read now (the future is done); while
        lookups come several per loop turn (concurrent callers), at the end of
        the turn, all of that turn's in one read on this thread; else by the
        worker thread.
        """
        found = self._pending.get(key)
        if found is not None or self.disabled is not None:
            return _done(found)
        if self._batching:
            return self._read_at_end_of_turn(key)
        answered, found = self._read(key)
        if answered:
            return _done(found)
        return self._submit("get", key)

    def _read_at_end_of_turn(self, key: bytes) -> asyncio.Future[Found]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Found] = loop.create_future()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = []
            loop.call_soon(self._read_turn, loop)
        turn.append((key, future))
        return future

    def _read_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        turn = self._turns.pop(loop, [])
        if len(turn) < 2:
            self._batching = False  # one caller at a time: read each at once again
        found = self.lookup_many([key for key, _ in turn])
        if found is None:  # the worker thread answers (see `_reader`)
            for key, future in turn:
                self._submit("get", key, future)
            return
        for (_, future), entry in zip(turn, found, strict=True):
            if not future.done():
                future.set_result(entry)

    async def get_many(self, keys: Sequence[bytes]) -> list[Found]:
        """`get` of many keys, in order: read on this thread when `lookup_many` can,
        else in one batch of the worker thread."""
        found = self.lookup_many(keys)
        if found is not None:
            return found
        return list(await asyncio.gather(*(self._submit("get", key) for key in keys)))

    def put(self, row: Row) -> asyncio.Future[None]:
        """Store one entry; resolves once it is committed (or was given up).

        Until then, lookups in this process find it among the pending stores.
        """
        entry = (row[2], row[5])
        with self._pending_lock:
            self._pending[row[0]] = entry
        if self._busy_since is None:
            self._busy_since = time.monotonic()  # work for the thread (queued this turn)
        return self._submit("put", (row, entry))

    def reset(self) -> None:
        """Close the connection and forget a disabled state (after `clear --all`)."""
        done: SyncFuture[None] = SyncFuture()
        with self._lock:
            running = self._thread is not None
            if running:
                self._queue.put(("reset", None, done, None))
        if running:
            done.result(timeout=30)
        self._checked = None
        self._generation += 1
        self._close_reader()
        self.disabled = None

    def _reader(self) -> _Reader | None:
        """This thread's reader, checked; None when the worker thread should answer."""
        now = time.monotonic()
        busy = self._busy_since
        if busy is not None and now - busy < JOIN_S:
            return None  # the thread is at work: join its next batch
        reader = self._readers.reader
        if reader is None or reader.generation != self._generation:
            reader = self._open_reader()
            if reader is None:
                return None
        if now - reader.stat_at > RECHECK_S:
            try:
                inode = os.stat(self._file).st_ino
            except OSError:
                inode = None
            if inode != reader.inode:  # replaced (`clear --all`): the worker reopens it
                self._read_failed()
                return None
            reader.stat_at = now
        return reader

    def _read_failed(self) -> None:
        # Replaced, locked past a 0 s busy timeout, or broken: the worker thread
        # waits, reopens or disables (with its one warning) as it always did.
        self._close_reader()
        self._checked = None

    def _open_reader(self) -> _Reader | None:
        self._close_reader()
        checked = self._checked
        if checked is None:
            return None
        conn = None
        try:
            # Busy timeout 0: a lookup on the event loop never waits for a lock.
            conn = sqlite3.connect(
                self._uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False
            )
            # Pages read in place from the OS page cache, not copied into SQLite's:
            # an eval reads most entries once (measured 6.5 -> 4.7 us a cold read).
            conn.execute(f"PRAGMA mmap_size={_READ_MMAP}")
        except sqlite3.Error:
            if conn is not None:
                conn.close()
            return None
        reader = self._readers.reader = _Reader(conn, checked, self._generation)
        return reader

    def _close_reader(self) -> None:
        readers = self._readers
        if readers.reader is not None:
            readers.reader.conn.close()
            readers.reader = None

    def _submit(
        self, op: str, arg: Any, future: asyncio.Future[Any] | None = None
    ) -> asyncio.Future[Any]:
        # Queued at the end of this turn of the loop, all together: the thread wakes
        # once for everything this turn asked for, not for the first store.
        loop = asyncio.get_running_loop()
        if future is None:
            future = loop.create_future()
        outbox = self._outbox.get(loop)
        if outbox is None:
            outbox = self._outbox[loop] = []
            loop.call_soon(self._flush, loop)
        outbox.append((op, arg, future, loop))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        for item in self._outbox.pop(loop, ()):
            self._queue.put(item)
        if self._busy_since is None:
            self._busy_since = time.monotonic()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"gauge-cache:{self.path.name}", daemon=True
                )
                self._thread.start()

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
            self._busy_since = time.monotonic()  # this batch's start
            try:
                self._serve(batch)
            except Exception as ex:  # never leave a caller waiting on a dead thread
                log.warning("response cache failed (%s); treating this batch as misses", ex)
                self._fail(batch)
            if self._queue.empty():
                self._busy_since = None

    def _serve(self, batch: list[tuple[str, Any, Any, Any]]) -> None:
        gets = [item for item in batch if item[0] == "get"]
        puts = [item for item in batch if item[0] == "put"]
        store = self._open()
        if gets:
            # Answered before this batch's stores are written (they may wait on a lock).
            found: dict[bytes, tuple[float, bytes]] = {}
            if store is not None:
                found = self._attempt(lambda: store.get_many([item[1] for item in gets]), {})
            _answer([(future, loop, found.get(key)) for _, key, future, loop in gets])
        if puts:
            if store is not None:
                self._attempt(lambda: store.put_many([item[1][0] for item in puts]), None)
            self._forget(puts)  # committed (readers see them now) or given up
            _answer([(future, loop, None) for _, _, future, loop in puts])
        if store is not None and self.disabled is None:
            self._checked = store.inode  # readers may open (again)
        for op, _, future, _ in batch:
            if op == "reset":
                self._close()
                future.set_result(None)

    def _forget(self, puts: list[tuple[str, Any, Any, Any]]) -> None:
        with self._pending_lock:
            pending = self._pending
            for _, (row, entry), _, _ in puts:
                if pending.get(row[0]) is entry:  # not replaced by a later store
                    del pending[row[0]]

    def _fail(self, batch: list[tuple[str, Any, Any, Any]]) -> None:
        self._forget([item for item in batch if item[0] == "put"])
        for op, _, future, loop in batch:
            if op == "reset":
                if not future.done():
                    future.set_result(None)
            else:
                _answer([(future, loop, None)])

    def _open(self) -> Store | None:
        if self.disabled is not None:
            self._close()
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
        self._checked = None
        self._close()
        log.warning("%s; continuing without the response cache", ex)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _done(found: Found) -> asyncio.Future[Found]:
    future: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
    future.set_result(found)
    return future


def _answer(answers: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any]]) -> None:
    """Resolve futures from the worker thread: one wake-up per event loop."""
    by_loop: defaultdict[asyncio.AbstractEventLoop, list[Any]] = defaultdict(list)
    for future, loop, value in answers:
        by_loop[loop].append((future, value))
    for loop, values in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits
            loop.call_soon_threadsafe(_resolve, values)


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
