"""The batching engine, driven by plain-Python batch functions (no model needed)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gauge.model.providers.hf.engine import BatchEngine


class Recorder:
    """A batch function that doubles numbers and records each batch it ran."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.started = threading.Event()
        self.gate = gate
        self.started_at: list[float] = []

    def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.started_at.append(time.perf_counter())
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(5)
        return [ValueError(f"bad item {i}") if i < 0 else i * 2 for i in items]


async def test_requests_submitted_together_run_as_one_batch() -> None:
    run = Recorder()
    engine = BatchEngine(run)
    results = await asyncio.gather(*(engine.submit(i) for i in range(10)))
    assert results == [i * 2 for i in range(10)]
    assert run.batches == [list(range(10))]
    assert list(engine.batch_sizes) == [10]
    assert run.threads == {"gauge-batch_0"}  # off the event loop, one worker
    engine.close()


async def test_requests_arriving_during_a_batch_form_the_next_batch() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    engine = BatchEngine(run)
    first = asyncio.ensure_future(engine.submit(1))
    await asyncio.to_thread(run.started.wait, 5)  # batch [1] is running
    later = [asyncio.ensure_future(engine.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0.01)
    assert run.batches == [[1]]  # nothing starts while the engine is busy
    gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8, 10, 12]
    assert run.batches == [[1], [2, 3, 4, 5, 6]]
    engine.close()


async def test_batch_size_is_capped_per_request() -> None:
    run = Recorder()
    engine = BatchEngine(run)
    results = await asyncio.gather(*(engine.submit(i, max_batch=4) for i in range(10)))
    assert results == [i * 2 for i in range(10)]
    assert [len(b) for b in run.batches] == [4, 4, 2]
    engine.close()


async def test_a_lone_request_starts_without_an_idle_window() -> None:
    run = Recorder()
    engine = BatchEngine(run)
    await engine.submit(0)  # warm the worker thread
    submitted = time.perf_counter()
    assert await engine.submit(21) == 42
    finished = time.perf_counter()
    # Inspect's provider waits up to 1 s for companions; this starts within a loop turn.
    assert run.started_at[-1] - submitted < 0.05
    assert finished - submitted < 0.1
    engine.close()


async def test_a_failing_item_fails_only_its_own_request() -> None:
    engine = BatchEngine(Recorder())
    results = await asyncio.gather(
        engine.submit(1), engine.submit(-1), engine.submit(3), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad item -1"
    engine.close()


async def test_a_failing_batch_gives_each_caller_its_own_exception() -> None:
    def broken(items: list[int]) -> list[int | BaseException]:
        raise OSError("weights missing")

    engine: BatchEngine[int, int] = BatchEngine(broken)
    results = await asyncio.gather(*(engine.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) and str(r) == "weights missing" for r in results)
    assert len({id(r) for r in results}) == 3  # retry history is attached per request
    engine.close()


async def test_a_cancelled_request_never_reaches_the_model() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    engine = BatchEngine(run)
    first = asyncio.ensure_future(engine.submit(1))
    await asyncio.to_thread(run.started.wait, 5)
    doomed = asyncio.ensure_future(engine.submit(2))
    kept = asyncio.ensure_future(engine.submit(3))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    assert await first == 2 and await kept == 6
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert run.batches == [[1], [3]]
    engine.close()


async def test_run_in_worker_shares_the_batch_thread() -> None:
    run = Recorder()
    engine = BatchEngine(run, name="gauge-test")
    name = await engine.run_in_worker(lambda: threading.current_thread().name)
    await engine.submit(1)
    assert run.threads == {name}
    engine.close()


def test_one_engine_serves_several_event_loops() -> None:
    run = Recorder()
    engine = BatchEngine(run)

    async def burst(base: int) -> list[int]:
        return list(await asyncio.gather(*(engine.submit(base + i) for i in range(3))))

    assert asyncio.run(burst(0)) == [0, 2, 4]
    assert asyncio.run(burst(10)) == [20, 22, 24]
    assert run.batches == [[0, 1, 2], [10, 11, 12]]
    engine.close()


async def test_a_closed_engine_fails_requests_instead_of_hanging() -> None:
    engine = BatchEngine(Recorder())
    assert await engine.submit(1) == 2
    engine.close()
    with pytest.raises(RuntimeError, match="after shutdown"):
        await asyncio.wait_for(engine.submit(2), 5)
