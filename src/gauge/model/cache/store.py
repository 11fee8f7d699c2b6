"""The SQLite store behind the response cache.

One database file (WAL journal) holds every entry:

    entries(id, key BLOB UNIQUE, model, created, expires, fingerprint, value)

`key` is the 32-byte SHA-256 of the request's key components, `value` the
response as JSON (never pickle), `fingerprint` the per-component summaries that
`cache explain` compares, and `expires` the absolute time the writer's policy
gave it (NULL: never), used by `list --expired` and `prune`. Writes are
transactions, so a reader sees a whole entry or none; WAL plus a busy timeout
lets several processes read and write at once.

A file SQLite cannot read (corrupt, or not a database) raises CacheError, whose
message says to run `gauge cache clear --all`, which deletes and recreates it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauge.errors import GaugeError

CACHE_DIR_ENV = "GAUGE_CACHE_DIR"
DB_NAME = "responses.sqlite3"
SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 10.0
"""How long a writer waits for another process's transaction before giving up."""
_CHUNK = 500
"""Keys per `IN (...)` query, below SQLite's bound-parameter limit."""

_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    fingerprint BLOB NOT NULL,
    value BLOB NOT NULL
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS entries_model ON entries(model)",
    "CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires) WHERE expires IS NOT NULL",
)
_META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
_COLUMNS = "key, model, created, expires, fingerprint, value"

REPAIR_HINT = "run `gauge cache clear --all` to delete and recreate it"


class CacheError(GaugeError):
    """The cache database cannot be opened, read or written."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One stored response, as the management API lists it."""

    key: str
    """The key as hex."""
    model: str
    created: float
    expires: float | None
    size: int
    """Bytes of stored data (key, fingerprint and value)."""


Row = tuple[bytes, str, float, float | None, bytes, bytes]
"""(key, model, created, expires, fingerprint, value) as `put_many` takes it."""


def cache_dir() -> Path:
    """GAUGE_CACHE_DIR, else the platform's user cache directory + /gauge."""
    if env := os.environ.get(CACHE_DIR_ENV):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gauge"


def database_path() -> Path:
    """The cache database file."""
    return cache_dir() / DB_NAME


def database_files(path: Path) -> list[Path]:
    """The database and its WAL side files."""
    return [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))]


def remove_database(path: Path) -> None:
    """Delete the database and its side files (missing ones are fine)."""
    for file in database_files(path):
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        except OSError as ex:
            raise CacheError(f"cannot delete {file}: {ex.strerror}") from None


def translate(ex: sqlite3.Error, path: Path) -> CacheError:
    """A one-line CacheError for a SQLite failure on `path`."""
    reason = " ".join(str(ex).split()) or type(ex).__name__
    if is_busy(ex):
        return CacheError(f"cache database {path} is busy ({reason}); try again")
    if isinstance(ex, sqlite3.OperationalError) and "unable to open" in reason:
        return CacheError(f"cannot open cache database {path} ({reason}); check GAUGE_CACHE_DIR")
    return CacheError(f"cache database {path} is unreadable ({reason}); {REPAIR_HINT}")


def is_busy(ex: BaseException) -> bool:
    """Whether `ex` is another process holding a lock past the busy timeout."""
    return isinstance(ex, sqlite3.OperationalError) and "locked" in str(ex)


class Store:
    """A connection to the cache database; use from one thread at a time."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            self.conn: sqlite3.Connection | None = None
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as ex:
            raise CacheError(
                f"cannot create cache directory {path.parent}: {ex.strerror}"
            ) from None
        try:
            self.conn = self._open()
        except sqlite3.Error as ex:
            raise translate(ex, path) from None
        self.inode = _inode(path)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: each transaction is atomic; only the last ones may be lost
            # on power failure, which a cache can afford.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Some builds zero every freed page (secure_delete=ON), which makes a prune
            # rewrite the whole file; FAST zeroes only what costs no extra I/O.
            conn.execute("PRAGMA secure_delete=FAST")
            with _transaction(conn):
                # One statement at a time: executescript would commit our BEGIN early.
                for statement in (_TABLE.format(name="entries"), *_INDEXES, _META):
                    conn.execute(statement)
                found = conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
                if found is None:
                    conn.execute(
                        "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,)
                    )
                elif found[0] != SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"schema version {found[0]}, this gauge reads {SCHEMA_VERSION}"
                    )
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def exists(self) -> bool:
        """False when opened with create=False and there was no database."""
        return self.conn is not None

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def replaced(self) -> bool:
        """Whether the file was deleted or replaced since it was opened (`clear --all`)."""
        return _inode(self.path) != self.inode

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, tuple[float, bytes]]:
        """key -> (created, value) for the keys that are stored."""
        if self.conn is None:
            return {}
        try:
            return self.read_many(self.conn, keys)
        except sqlite3.Error as ex:
            raise translate(ex, self.path) from None

    @staticmethod
    def read_many(
        conn: sqlite3.Connection, keys: Sequence[bytes]
    ) -> dict[bytes, tuple[float, bytes]]:
        """`get_many` on any connection to a cache database (sqlite3.Error as is)."""
        found: dict[bytes, tuple[float, bytes]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, created, value FROM entries WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, created, value in rows:
                found[key] = (created, value)
        return found

    def put_many(self, rows: Iterable[Row]) -> None:
        """Insert or replace entries, all in one transaction."""
        conn = self._conn()
        try:
            with _transaction(conn):
                conn.executemany(
                    f"INSERT INTO entries ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "model=excluded.model, created=excluded.created, expires=excluded.expires, "
                    "fingerprint=excluded.fingerprint, value=excluded.value",
                    rows,
                )
        except sqlite3.Error as ex:
            raise translate(ex, self.path) from None

    def entry(self, key: bytes) -> tuple[str, float, float | None, bytes] | None:
        """(model, created, expires, fingerprint) of one entry."""
        rows = self._run(
            "SELECT model, created, expires, fingerprint FROM entries WHERE key = ?", (key,)
        )
        return rows[0] if rows else None

    def fingerprints(self, model: str) -> Iterator[tuple[bytes, float, float | None, bytes]]:
        """(key, created, expires, fingerprint) of every entry of `model`."""
        yield from self._run(
            "SELECT key, created, expires, fingerprint FROM entries WHERE model = ?", (model,)
        )

    def sizes(self, models: Sequence[str] = ()) -> list[tuple[str, int]]:
        """(model, bytes of stored data) per model, largest first."""
        sql = (
            "SELECT model, SUM(length(key) + length(fingerprint) + length(value)) AS size "
            "FROM entries"
        )
        args: tuple[str, ...] = ()
        if models:
            sql += f" WHERE model IN ({','.join('?' * len(models))})"
            args = tuple(models)
        rows = self._run(sql + " GROUP BY model ORDER BY size DESC, model", args)
        return [(model, int(size)) for model, size in rows]

    def summary(self) -> list[tuple[str, int, int]]:
        """(model, entries, bytes of stored data) per model, largest first."""
        rows = self._run(
            "SELECT model, COUNT(*), SUM(length(key) + length(fingerprint) + length(value)) "
            "AS size FROM entries GROUP BY model ORDER BY size DESC, model"
        )
        return [(model, int(count), int(size)) for model, count, size in rows]

    def entry_sizes(self, keys: Sequence[bytes]) -> list[tuple[str, int]]:
        """(key hex, bytes of stored data) for the keys that are stored."""
        result: list[tuple[str, int]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._run(
                "SELECT key, length(key) + length(fingerprint) + length(value) FROM entries "
                f"WHERE key IN ({marks})",
                chunk,
            )
            result.extend((key.hex(), size) for key, size in rows)
        return result

    def count(self) -> int:
        """Number of entries."""
        return int(self._run("SELECT COUNT(*) FROM entries")[0][0])

    def clear_model(self, model: str) -> int:
        """Delete every entry of `model`; the number deleted."""
        return self._write("DELETE FROM entries WHERE model = ?", (model,))

    def expired(self, models: Sequence[str] = (), now: float | None = None) -> list[CacheEntry]:
        """Entries whose stored expiry has passed, oldest expiry first."""
        sql = (
            "SELECT key, model, created, expires, length(key) + length(fingerprint) + "
            "length(value) FROM entries WHERE expires IS NOT NULL AND expires <= ?"
        )
        args: list[object] = [time.time() if now is None else now]
        if models:
            sql += f" AND model IN ({','.join('?' * len(models))})"
            args.extend(models)
        rows = self._run(sql + " ORDER BY expires", args)
        return [CacheEntry(key.hex(), m, c, e, s) for key, m, c, e, s in rows]

    def prune(self, keys: Sequence[bytes] | None = None, now: float | None = None) -> int:
        """Delete `keys`, or (None) every expired entry; the number deleted."""
        if keys is None:
            return self._prune_expired(time.time() if now is None else now)
        if self.conn is None:
            return 0
        conn = self.conn
        try:
            with _transaction(conn):
                before = conn.total_changes
                conn.executemany("DELETE FROM entries WHERE key = ?", ((k,) for k in keys))
                return conn.total_changes - before
        except sqlite3.Error as ex:
            raise translate(ex, self.path) from None

    def _prune_expired(self, now: float) -> int:
        if self.conn is None:
            return 0
        conn = self.conn
        expired_sql = "FROM entries WHERE expires IS NOT NULL AND expires <= ?"
        try:
            with _transaction(conn):
                expired = conn.execute(f"SELECT COUNT(*) {expired_sql}", (now,)).fetchone()[0]
                if not expired:
                    return 0
                total = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                # Measured break-even: a row delete costs about twice a survivor's copy.
                if expired * 10 < total * 3:
                    conn.execute(f"DELETE {expired_sql}", (now,))
                    return int(expired)
                # Largely expired: copying the survivors into a fresh table and dropping
                # the old one frees whole pages, instead of editing every page of the
                # table and its random-keyed index once per deleted row.
                conn.execute("DROP TABLE IF EXISTS entries_new")
                conn.execute(_TABLE.format(name="entries_new"))
                conn.execute(
                    f"INSERT INTO entries_new ({_COLUMNS}) SELECT {_COLUMNS} FROM entries "
                    "WHERE expires IS NULL OR expires > ?",
                    (now,),
                )
                conn.execute("DROP TABLE entries")
                conn.execute("ALTER TABLE entries_new RENAME TO entries")
                for statement in _INDEXES:
                    conn.execute(statement)
                return int(expired)
        except sqlite3.Error as ex:
            raise translate(ex, self.path) from None

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise CacheError(f"cache database {self.path} is closed")
        return self.conn

    def _run(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        if self.conn is None:
            return []
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as ex:
            raise translate(ex, self.path) from None

    def _write(self, sql: str, args: Sequence[object]) -> int:
        if self.conn is None:  # no database: nothing to delete
            return 0
        conn = self.conn
        try:
            with _transaction(conn):
                return conn.execute(sql, args).rowcount
        except sqlite3.Error as ex:
            raise translate(ex, self.path) from None


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): take the write lock up front,
    so two writers queue on the busy timeout instead of deadlocking on upgrade."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # keep the original error
                self.conn.execute("ROLLBACK")


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
