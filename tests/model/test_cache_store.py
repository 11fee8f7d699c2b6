"""The SQLite store: entries, sizes, expiry, corruption, and several processes at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from gauge.model.cache.store import CacheError, Store, remove_database


def row(n: int, model: str = "mock/a", created: float = 1000.0, expires: float | None = 2000.0):
    value = orjson.dumps({"model": model, "choices": [], "n": n})
    return (n.to_bytes(32, "big"), model, created, expires, b'{"schema":"1"}', value)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "c" / "responses.sqlite3")
    yield s
    s.close()


def test_new_database_is_wal_with_json_values(store: Store) -> None:
    store.put_many([row(1)])
    assert store.get_many([row(1)[0], row(2)[0]]) == {row(1)[0]: (1000.0, row(1)[5])}
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        value = raw.execute("SELECT value FROM entries").fetchone()[0]
    # Plain JSON: readable by anything, executable by nothing.
    assert orjson.loads(value)["n"] == 1


def test_put_replaces_an_existing_key(store: Store) -> None:
    store.put_many([row(1, created=1.0)])
    store.put_many([row(1, created=5.0)])
    assert store.count() == 1
    assert store.get_many([row(1)[0]])[row(1)[0]][0] == 5.0


def test_get_many_spans_chunks(store: Store) -> None:
    store.put_many(row(n) for n in range(1200))
    keys = [row(n)[0] for n in range(0, 1300)]
    assert len(store.get_many(keys)) == 1200


def test_sizes_summary_and_clear_model(store: Store) -> None:
    store.put_many([row(1, "mock/a"), row(2, "mock/a"), row(3, "mock/b")])
    sizes = dict(store.sizes())
    per_entry = 32 + len(b'{"schema":"1"}') + len(row(1)[5])
    assert sizes["mock/a"] == 2 * per_entry
    assert store.sizes(["mock/b"]) == [("mock/b", per_entry)]
    assert store.summary()[0] == ("mock/a", 2, 2 * per_entry)
    assert store.entry_sizes([row(3)[0]]) == [(row(3)[0].hex(), per_entry)]
    assert store.clear_model("mock/a") == 2
    assert [m for m, _ in store.sizes()] == ["mock/b"]


def test_expired_and_prune(store: Store) -> None:
    store.put_many(
        [
            row(1, expires=100.0),
            row(2, "mock/b", expires=200.0),
            row(3, expires=900.0),
            row(4, expires=None),
        ]
    )
    expired = store.expired(now=500.0)
    assert [(e.key, e.model, e.expires) for e in expired] == [
        (row(1)[0].hex(), "mock/a", 100.0),
        (row(2)[0].hex(), "mock/b", 200.0),
    ]
    assert [e.model for e in store.expired(["mock/b"], now=500.0)] == ["mock/b"]
    assert store.prune([row(2)[0]]) == 1
    assert store.prune(now=500.0) == 1
    assert store.count() == 2
    assert store.prune(now=10**12) == 1  # the never-expiring entry stays
    assert store.get_many([row(4)[0]])


def test_missing_database_is_not_created_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "none" / "responses.sqlite3"
    reader = Store(path, create=False)
    assert not reader.exists
    assert reader.sizes() == [] and reader.expired() == []
    assert not path.exists()


@pytest.mark.parametrize(
    "content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 5000]
)
def test_corrupt_database_is_a_one_line_error_that_says_how_to_repair(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "responses.sqlite3"
    path.write_bytes(content)
    with pytest.raises(CacheError) as info:
        Store(path)
    message = str(info.value)
    assert "\n" not in message
    assert "gauge cache clear --all" in message
    remove_database(path)
    repaired = Store(path)
    repaired.put_many([row(1)])
    assert repaired.count() == 1
    repaired.close()


def test_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
    with pytest.raises(CacheError, match="schema version 99"):
        Store(path)


def test_replaced_detects_clear_all_from_another_process(store: Store) -> None:
    assert not store.replaced()
    remove_database(store.path)
    assert store.replaced()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from gauge import get_model

    async def main(worker: int) -> None:
        model = get_model("mock/shared")
        prompts = [f"prompt {i}" for i in range(worker * 50, worker * 50 + 100)]
        outputs = await asyncio.gather(*(model.generate(p, cache=True) for p in prompts))
        assert [o.completion for o in outputs] == prompts
        print(model.api.calls)

    asyncio.run(main(int(sys.argv[1])))
    """
)


def test_several_processes_write_the_same_database(tmp_path: Path) -> None:
    cache_dir = tmp_path / "shared"
    env = {"GAUGE_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        assert b"Warning" not in err and b"WARNING" not in err, err.decode()
    # Every distinct prompt reached the model at least once (overlaps may race).
    assert 250 <= sum(int(out) for out, _ in results) <= 400
    # Workers overlap by 50 prompts: 250 distinct requests, each stored once.
    store = Store(cache_dir / "responses.sqlite3")
    try:
        assert store.count() == 250
        for model, count, _ in store.summary():
            assert (model, count) == ("mock/shared", 250)
        values = store.get_many([k for k, *_ in _all_keys(store)])
        assert all(orjson.loads(v)["model"] == "mock/shared" for _, v in values.values())
    finally:
        store.close()
    # A second run of any worker is answered entirely from the cache.
    again = subprocess.run(
        [sys.executable, "-c", WRITER, "3"], env=env, capture_output=True, timeout=60
    )
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout.strip() == b"0"


def _all_keys(store: Store) -> list[tuple[bytes]]:
    assert store.conn is not None
    return store.conn.execute("SELECT key FROM entries").fetchall()


def test_prune_of_mostly_expired_entries_rebuilds_the_table_intact(store: Store) -> None:
    store.put_many(row(n, expires=100.0) for n in range(300))
    store.put_many([row(1000, "mock/b", expires=None), row(1001, "mock/b", expires=10**12)])
    assert store.prune(now=500.0) == 300
    assert store.count() == 2
    assert set(store.get_many([row(1000)[0], row(1001)[0], row(5)[0]])) == {
        row(1000)[0],
        row(1001)[0],
    }
    assert store.conn is not None
    indexes = {
        r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {"entries_model", "entries_expires"} <= indexes
    # Still a working table: unique keys, upserts, expiry queries.
    store.put_many([row(1000, "mock/b", created=7.0, expires=None), row(7, expires=100.0)])
    store.put_many(row(n, expires=900.0) for n in range(2000, 2010))
    assert store.count() == 13
    assert [e.key for e in store.expired(now=500.0)] == [row(7)[0].hex()]
    assert store.prune(now=500.0) == 1  # one of 13: the plain delete path
    assert store.count() == 12
    assert store.get_many([row(1000)[0]])[row(1000)[0]][0] == 7.0
