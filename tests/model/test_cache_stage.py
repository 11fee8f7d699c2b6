"""The cache stage through Model.generate: hits, misses, what is stored, and failure modes."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.model.cache import CachePolicy, cache_clear, cache_epoch
from gauge.model.cache.store import Store
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.output import ModelOutput
from gauge.model.providers.mock import MockFatalError


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    return path


def mock(**args: Any) -> Model:
    return get_model("mock/cache", memoize=False, **args)


def stored(cache_dir: Path) -> int:
    store = Store(cache_dir / "responses.sqlite3", create=False)
    try:
        return store.count() if store.exists else 0
    finally:
        store.close()


def calls(model: Model) -> int:
    return model.api.calls  # type: ignore[attr-defined]


async def test_miss_stores_and_hit_returns_the_same_output(cache_dir: Path) -> None:
    model = mock()
    first = await model.generate("the capital of France", cache=True)
    second = await model.generate("the capital of France", cache=True)
    assert calls(model) == 1
    assert first.metadata == {"cache": "miss"} and second.metadata == {"cache": "hit"}
    assert second.completion == first.completion == "the capital of France"
    assert second.usage == first.usage
    assert second.model_dump(exclude={"metadata"}) == first.model_dump(exclude={"metadata"})
    assert stored(cache_dir) == 1
    # Tokens are counted once: a hit costs nothing.
    assert model.usage.total_tokens == first.usage.total_tokens  # type: ignore[union-attr]


async def test_without_cache_nothing_is_looked_up_or_stored(cache_dir: Path) -> None:
    model = mock()
    await model.generate("a")
    output = await model.generate("a")
    assert calls(model) == 2 and output.metadata is None
    assert not cache_dir.exists()


async def test_config_cache_turns_it_on_and_cache_false_turns_it_off() -> None:
    model = get_model("mock/cache", config=GenerateConfig(cache="1D"), memoize=False)
    await model.generate("q")
    await model.generate("q")
    assert calls(model) == 1
    off = await model.generate("q", cache=False)
    assert off.metadata is None and calls(model) == 2
    per_call = await model.generate("r", config=GenerateConfig(cache=True))
    assert per_call.metadata == {"cache": "miss"}


async def test_different_config_misses_but_timeouts_do_not_matter() -> None:
    model = mock()
    await model.generate("q", cache=True, config=GenerateConfig(temperature=0.0))
    await model.generate("q", cache=True, config=GenerateConfig(temperature=0.0, timeout=30))
    assert calls(model) == 1
    await model.generate("q", cache=True, config=GenerateConfig(temperature=0.9))
    assert calls(model) == 2


async def test_errors_and_content_filter_outputs_are_never_stored(cache_dir: Path) -> None:
    refused = ModelOutput.from_content("mock/cache", "I can't.", stop_reason="content_filter")
    failed = ModelOutput.from_content("mock/cache", "", error="upstream refused")
    model = mock(outputs=[refused, refused, failed, failed])
    for _ in range(2):
        assert (await model.generate("x", cache=True)).stop_reason == "content_filter"
    for _ in range(2):
        assert (await model.generate("y", cache=True)).error == "upstream refused"
    assert calls(model) == 4
    assert stored(cache_dir) == 0


async def test_raised_errors_propagate_and_are_not_stored(cache_dir: Path) -> None:
    model = mock(errors=["fatal"])
    with pytest.raises(MockFatalError):
        await model.generate("z", cache=True)
    assert stored(cache_dir) == 0
    assert (await model.generate("z", cache=True)).metadata == {"cache": "miss"}


async def test_tool_call_outputs_round_trip() -> None:
    call = ModelOutput.for_tool_call("mock/cache", "calc", {"expr": "2+2"}, "call_1")
    model = mock(outputs=[call])
    first = await model.generate("add", cache=True)
    second = await model.generate("add", cache=True)
    assert second.message.tool_calls == first.message.tool_calls
    assert second.stop_reason == "tool_calls"


async def test_the_looking_up_policy_decides_freshness(cache_dir: Path) -> None:
    model = mock()
    await model.generate("old", cache="1W")
    with sqlite3.connect(cache_dir / "responses.sqlite3") as raw:
        raw.execute("UPDATE entries SET created = created - 2 * 86400")
    # Two days old: fresh under 1W (changing the expiry does not miss everything) ...
    assert (await model.generate("old", cache="1W")).metadata == {"cache": "hit"}
    assert (await model.generate("old", cache=CachePolicy(expiry=None))).metadata == {
        "cache": "hit"
    }
    # ... stale under 1D: generated again and the entry replaced.
    assert (await model.generate("old", cache="1D")).metadata == {"cache": "miss"}
    assert (await model.generate("old", cache="1D")).metadata == {"cache": "hit"}
    assert calls(model) == 2 and stored(cache_dir) == 1


async def test_epochs_and_scopes_keep_entries_apart() -> None:
    model = mock()
    await model.generate("e", cache=True)
    token = cache_epoch.set(1)
    try:
        assert (await model.generate("e", cache=True)).metadata == {"cache": "miss"}
        shared = CachePolicy(per_epoch=False)
        await model.generate("e", cache=shared)
    finally:
        cache_epoch.reset(token)
    assert (await model.generate("e", cache=shared)).metadata == {"cache": "hit"}
    graded = CachePolicy(scopes={"role": "grader"})
    assert (await model.generate("e", cache=graded)).metadata == {"cache": "miss"}
    assert calls(model) == 4


async def test_a_hit_does_not_wait_for_a_connection_slot() -> None:
    release = asyncio.Event()

    async def reply(input: Any, *rest: Any) -> str:
        if input[-1].text == "slow":
            await release.wait()
        return "ok"

    model = mock(outputs=reply, max_connections=1)
    await model.generate("fast", cache=True)
    slow = asyncio.create_task(model.generate("slow", cache=True))
    await asyncio.sleep(0.05)  # "slow" now holds the only slot
    hit = await asyncio.wait_for(model.generate("fast", cache=True), timeout=5)
    assert hit.metadata == {"cache": "hit"}
    assert not slow.done()
    release.set()
    assert (await slow).completion == "ok"


async def test_waiting_on_a_locked_database_never_blocks_the_event_loop(cache_dir: Path) -> None:
    model = mock()
    await model.generate("warm", cache=True)
    locked = threading.Event()

    def hold_write_lock() -> None:
        other = sqlite3.connect(cache_dir / "responses.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(0.5)
        other.execute("ROLLBACK")
        other.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    locked.wait()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    started = time.perf_counter()
    output = await model.generate("new prompt", cache=True)  # its store waits for the lock
    elapsed = time.perf_counter() - started
    tick_task.cancel()
    holder.join()
    assert output.metadata == {"cache": "miss"}
    assert elapsed >= 0.3
    assert ticks >= 10  # the loop kept running while the store waited
    assert (await model.generate("new prompt", cache=True)).metadata == {"cache": "hit"}


async def test_corrupt_database_warns_once_runs_uncached_and_clear_all_repairs(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir.mkdir()
    (cache_dir / "responses.sqlite3").write_bytes(b"garbage, not sqlite " * 200)
    model = mock()
    with caplog.at_level(logging.WARNING, logger="gauge.cache"):
        outputs = [await model.generate("p", cache=True) for _ in range(3)]
    assert [o.completion for o in outputs] == ["p"] * 3
    assert calls(model) == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "gauge.cache"]
    assert len(warnings) == 1
    assert "unreadable" in warnings[0] and "gauge cache clear --all" in warnings[0]
    assert "\n" not in warnings[0]
    assert cache_clear() is True
    await model.generate("p", cache=True)
    assert (await model.generate("p", cache=True)).metadata == {"cache": "hit"}
    assert calls(model) == 4


async def test_secrets_never_reach_the_database(cache_dir: Path) -> None:
    model = mock(api_key="sk-live-key-123")
    config = GenerateConfig(extra_headers={"Authorization": "Bearer sk-live-token-456"})
    await model.generate("secret test", cache=True, config=config)
    assert (await model.generate("secret test", cache=True, config=config)).metadata == {
        "cache": "hit"
    }
    data = b"".join(p.read_bytes() for p in cache_dir.iterdir())
    assert b"secret test" in data
    assert b"sk-live-key-123" not in data and b"sk-live-token-456" not in data


async def test_bad_cache_argument_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        await mock().generate("x", cache="2 weeks")
    assert "\n" not in str(info.value) and "expiry such as '1W'" in str(info.value)


def test_the_sync_facade_uses_the_cache() -> None:
    model = mock()
    sync = model.sync()
    assert sync.generate("sync prompt", cache=True) == "sync prompt"
    assert sync.generate("sync prompt", cache=True) == "sync prompt"
    assert calls(model) == 1


def _child_generates(queue: Any) -> None:
    async def run() -> dict[str, Any] | None:
        model = mock()
        await model.generate("from the child", cache=True)
        return (await model.generate("parent prompt", cache=True)).metadata

    queue.put(asyncio.run(run()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads (3.12+)
async def test_a_forked_child_gets_its_own_worker(cache_dir: Path) -> None:
    import multiprocessing

    model = mock()
    await model.generate("parent prompt", cache=True)  # the parent's worker thread runs
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_generates, args=(queue,))
    child.start()
    metadata = await asyncio.to_thread(queue.get, True, 30)
    child.join(30)
    assert child.exitcode == 0 and metadata == {"cache": "hit"}
    assert stored(cache_dir) == 2
    assert (await model.generate("from the child", cache=True)).metadata == {"cache": "hit"}
