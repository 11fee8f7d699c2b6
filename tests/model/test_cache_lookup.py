"""How a lookup is answered: on the event loop's thread, from pending stores or a
read-only connection, and what it notices (other processes, clear --all, corruption)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gauge.model.cache import cache_clear
from gauge.model.cache import worker as worker_module
from gauge.model.cache.stage import current_worker, decode
from gauge.model.cache.store import Store, database_files
from gauge.model.cache.worker import Worker
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.output import ModelOutput


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    return path


def mock() -> Model:
    return get_model("mock/cache", memoize=False)


def calls(model: Model) -> int:
    return int(model.api.calls)  # type: ignore[attr-defined]


async def idle(worker: Worker) -> None:
    """Wait until the worker thread has nothing queued or unfinished."""
    for _ in range(500):
        if not worker._pending and worker._busy_since is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the cache worker never went idle")


def in_subprocess(code: str, cache_dir: Path) -> str:
    env = {**os.environ, "GAUGE_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_hits_are_read_on_the_loop_without_the_worker_thread() -> None:
    model = mock()
    prompts = [f"prompt {i}" for i in range(20)]
    for p in prompts:
        await model.generate(p, cache=True)
    worker = current_worker()
    await idle(worker)
    asked: list[str] = []

    def no_thread(op: str, arg: Any) -> Any:
        asked.append(op)
        raise AssertionError("a hit went to the worker thread")

    worker._submit = no_thread  # type: ignore[method-assign]
    outputs = [await model.generate(p, cache=True) for p in prompts]
    assert [o.metadata for o in outputs] == [{"cache": "hit"}] * 20
    assert [o.completion for o in outputs] == prompts
    assert asked == [] and calls(model) == 20


async def test_a_store_not_yet_committed_is_found_and_hits_go_on_while_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = mock()
    await model.generate("stored", cache=True)
    worker = current_worker()
    await idle(worker)
    monkeypatch.setattr(worker_module, "JOIN_S", 0.05)
    release = threading.Event()
    entered = threading.Event()
    put_many = Store.put_many

    def held(self: Store, rows: Any) -> None:
        entered.set()
        release.wait(30)
        put_many(self, rows)

    monkeypatch.setattr(Store, "put_many", held)
    try:
        # Its store blocks the worker thread until released.
        first = asyncio.create_task(model.generate("pending", cache=True))
        await asyncio.to_thread(entered.wait, 10)
        # Read-your-writes: the queued value answers a later lookup of the same request.
        again = await asyncio.wait_for(model.generate("pending", cache=True), timeout=5)
        assert again.metadata == {"cache": "hit"} and again.completion == "pending"
        # A stored entry is read on the loop while the thread is stuck.
        await asyncio.sleep(0.06)  # past JOIN_S: lookups stop waiting for the thread
        started = time.perf_counter()
        hit = await asyncio.wait_for(model.generate("stored", cache=True), timeout=5)
        assert hit.metadata == {"cache": "hit"}
        assert time.perf_counter() - started < 1.0
        assert not first.done()
    finally:
        release.set()
    assert (await first).metadata == {"cache": "miss"}
    assert calls(model) == 2
    await idle(worker)
    assert not worker._pending
    assert (await model.generate("pending", cache=True)).metadata == {"cache": "hit"}


async def test_another_process_writing_or_clearing_a_model_is_seen(cache_dir: Path) -> None:
    model = mock()
    await model.generate("mine", cache=True)
    await idle(current_worker())
    assert (await model.generate("mine", cache=True)).metadata == {"cache": "hit"}  # reader open
    code = (
        "import asyncio; from gauge import get_model; "
        "print(asyncio.run(get_model('mock/cache').generate('theirs', cache=True)).metadata)"
    )
    assert in_subprocess(code, cache_dir) == "{'cache': 'miss'}"
    theirs = await model.generate("theirs", cache=True)
    assert theirs.metadata == {"cache": "hit"} and calls(model) == 1
    in_subprocess("from gauge.model.cache import cache_clear; cache_clear('mock/cache')", cache_dir)
    assert (await model.generate("mine", cache=True)).metadata == {"cache": "miss"}
    assert calls(model) == 2


async def test_clear_all_from_another_process_is_noticed(cache_dir: Path) -> None:
    model = mock()
    await model.generate("p", cache=True)
    await idle(current_worker())
    assert (await model.generate("p", cache=True)).metadata == {"cache": "hit"}
    in_subprocess("from gauge.model.cache import cache_clear; cache_clear()", cache_dir)
    time.sleep(worker_module.RECHECK_S * 2)
    assert (await model.generate("p", cache=True)).metadata == {"cache": "miss"}
    assert (await model.generate("p", cache=True)).metadata == {"cache": "hit"}
    assert calls(model) == 2


async def test_clear_all_in_this_process_retires_the_readers() -> None:
    model = mock()
    await model.generate("p", cache=True)
    await idle(current_worker())
    assert (await model.generate("p", cache=True)).metadata == {"cache": "hit"}
    assert cache_clear() is True
    assert (await model.generate("p", cache=True)).metadata == {"cache": "miss"}
    assert calls(model) == 2


async def test_a_database_replaced_by_a_corrupt_file_warns_once_and_runs_uncached(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = mock()
    await model.generate("p", cache=True)
    await idle(current_worker())
    assert (await model.generate("p", cache=True)).metadata == {"cache": "hit"}
    path = cache_dir / "responses.sqlite3"
    for file in database_files(path):
        file.unlink(missing_ok=True)
    path.write_bytes(b"garbage, not sqlite " * 200)
    time.sleep(worker_module.RECHECK_S * 2)
    with caplog.at_level(logging.WARNING, logger="gauge.cache"):
        outputs = [await model.generate("p", cache=True) for _ in range(3)]
    assert [o.completion for o in outputs] == ["p"] * 3
    assert all(o.metadata != {"cache": "hit"} for o in outputs)
    assert calls(model) == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "gauge.cache"]
    assert len(warnings) == 1 and "gauge cache clear --all" in warnings[0]


async def test_another_process_holding_the_write_lock_does_not_delay_a_hit(
    cache_dir: Path,
) -> None:
    model = mock()
    await model.generate("p", cache=True)
    await idle(current_worker())
    other = sqlite3.connect(cache_dir / "responses.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM entries")  # not committed: readers still see the entry
        started = time.perf_counter()
        hit = await model.generate("p", cache=True)
        assert hit.metadata == {"cache": "hit"}
        assert time.perf_counter() - started < 1.0  # the writers' busy timeout is 10 s
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_run_of_hits_still_lets_other_tasks_run() -> None:
    model = mock()
    prompts = [f"prompt {i}" for i in range(200)]
    for p in prompts:
        await model.generate(p, cache=True)
    await idle(current_worker())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    for p in prompts:  # no hit suspends on its own: now and then one waits a turn
        assert (await model.generate(p, cache=True)).metadata == {"cache": "hit"}
    task.cancel()
    assert ticks - before >= 200 // worker_module.PROBE_EVERY - 1


async def test_scoring_hits_are_read_on_the_loop_in_one_go() -> None:
    model = mock()
    pairs = [("The answer is", f" {i}") for i in range(600)]  # more than one IN (...) chunk
    first = await model.loglikelihood(pairs, cache=True)
    worker = current_worker()
    await idle(worker)

    def no_thread(op: str, arg: Any) -> Any:
        raise AssertionError("a scoring hit went to the worker thread")

    worker._submit = no_thread  # type: ignore[method-assign]
    assert await model.loglikelihood(pairs, cache=True) == first
    assert await model.loglikelihood(pairs[::-1], cache=True) == first[::-1]


@pytest.mark.parametrize(
    "value",
    [
        ModelOutput.from_content("m", "hi").model_dump_json(exclude_none=True).encode(),
        ModelOutput.for_tool_call("m", "calc", {"expr": "2+2", "n": [1, 2.5, None]}, "call_1")
        .model_dump_json(exclude_none=True)
        .encode(),
        # Written by hand (not by model_dump_json): strict validation refuses the 5.0.
        b'{"model":"m","choices":[],"usage":{"input_tokens":5.0,"output_tokens":1,'
        b'"total_tokens":6},"time":1}',
    ],
)
def test_stored_values_decode_as_lax_validation_would(value: bytes) -> None:
    decoded = decode(value)
    expected = ModelOutput.model_validate_json(value)
    assert decoded == expected and decoded.model_fields_set == expected.model_fields_set


async def test_concurrent_hits_share_one_read_per_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = mock()
    prompts = [f"prompt {i}" for i in range(300)]
    await asyncio.gather(*(model.generate(p, cache=True) for p in prompts))
    worker = current_worker()
    await idle(worker)
    reads: list[int] = []
    read_many = Store.read_many

    def counted(conn: sqlite3.Connection, keys: Any) -> Any:
        reads.append(len(keys))
        return read_many(conn, keys)

    monkeypatch.setattr(Store, "read_many", staticmethod(counted))
    worker._submit = lambda op, arg, future=None: pytest.fail("a hit went to the thread")  # type: ignore[method-assign]
    outputs = await asyncio.gather(*(model.generate(p, cache=True) for p in prompts))
    assert [o.completion for o in outputs] == prompts
    assert all(o.metadata == {"cache": "hit"} for o in outputs)
    # A few answered one by one until the worker saw the turn was crowded, then
    # the rest in a handful of shared reads.
    assert sum(reads) >= len(prompts) - worker_module.PROBE_EVERY
    assert len(reads) <= 5
    # Alone again: one caller's lookups are read at once, not held for a turn.
    for p in prompts[:40]:
        await model.generate(p, cache=True)
    assert not worker._batching
