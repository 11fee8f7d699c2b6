"""Response-cache benchmarks: hit latency, all-hits eval throughput, prune, bytes per entry.

    .venv/bin/python bench/cache_bench.py [--entries 1000000] [--samples 10000]

Targets (issue 6): a hit <= 0.1 ms per lookup in process; an eval whose every
request hits >= 5,000 samples/s; `cache prune` of 1,000,000 entries <= 2 s;
<= 1 KB on disk per small entry. Everything runs offline on the mock provider,
in a temporary GAUGE_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def small_prompts(n: int) -> list[str]:
    """Short, distinct prompts like an arithmetic eval's."""
    return [f"Question {i}: what is {i} plus {i * 7 % 13}? Answer with a number." for i in range(n)]


async def fill(model_name: str, prompts: list[str]) -> None:
    from gauge.model.factory import get_model

    model = get_model(model_name, memoize=False)
    for start in range(0, len(prompts), 500):
        batch = prompts[start : start + 500]
        await asyncio.gather(*(model.generate(p, cache=True) for p in batch))


def bench_store_lookup(path: Path, prompts: list[str]) -> dict[str, float]:
    """Per-lookup latency of the store itself: key already computed, one row by key."""
    from gauge.model.cache.store import Store

    store = Store(path)
    assert store.conn is not None
    keys = [k for (k,) in store.conn.execute("SELECT key FROM entries LIMIT ?", (len(prompts),))]
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for key in keys:
            store.get_many([key])
        runs.append((time.perf_counter() - started) / len(keys))
    store.close()
    return {"store_get_ms": min(runs) * 1000}


async def bench_worker_lookup(path: Path, count: int) -> dict[str, float]:
    """Per-lookup latency of `Worker.get`: read on the event loop's thread from a
    read-only connection once the worker has opened the database (before the
    response-cache fast path it went to the worker thread; the name is kept so
    results stay comparable)."""
    from gauge.model.cache.store import Store
    from gauge.model.cache.worker import worker_for

    store = Store(path)
    assert store.conn is not None
    keys = [k for (k,) in store.conn.execute("SELECT key FROM entries LIMIT ?", (count,))]
    store.close()
    worker = worker_for(path)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for key in keys:
            found = await worker.get(key)
        runs.append((time.perf_counter() - started) / len(keys))
        assert found is not None
    return {"lookup_off_loop_ms": min(runs) * 1000}


async def bench_generate_hits(prompts: list[str], concurrency: int) -> dict[str, float]:
    """Model.generate with every request a hit: serial latency and eval-like throughput."""
    from gauge.model.factory import get_model

    model = get_model("mock/bench", memoize=False)
    serial = len(prompts) // 5
    for p in prompts[:serial]:  # warm
        await model.generate(p, cache=True)
    started = time.perf_counter()
    for p in prompts[:serial]:
        output = await model.generate(p, cache=True)
    serial_s = (time.perf_counter() - started) / serial
    assert output.metadata == {"cache": "hit"}

    # Eval-like: `concurrency` samples in flight, each one generate call.
    queue = iter(prompts)
    hits = 0

    async def sample_worker() -> None:
        nonlocal hits
        for p in queue:
            out = await model.generate(p, cache=True)
            hits += out.metadata == {"cache": "hit"}

    started = time.perf_counter()
    await asyncio.gather(*(sample_worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    assert hits == len(prompts), f"only {hits} of {len(prompts)} hit"
    calls = model.api.calls  # type: ignore[attr-defined]
    assert calls == 0, f"the provider was called {calls} times"
    return {
        "generate_hit_serial_ms": serial_s * 1000,
        "eval_all_hits_samples_per_s": len(prompts) / elapsed,
    }


async def bench_no_cache(prompts: list[str], concurrency: int) -> float:
    """The same eval-like loop with the cache off (the mock answers instantly)."""
    from gauge.model.factory import get_model

    model = get_model("mock/bench", memoize=False)
    queue = iter(prompts)

    async def sample_worker() -> None:
        for p in queue:
            await model.generate(p)

    started = time.perf_counter()
    await asyncio.gather(*(sample_worker() for _ in range(concurrency)))
    return len(prompts) / (time.perf_counter() - started)


def bytes_per_entry(path: Path) -> float:
    """Size of the database file per entry, after folding the WAL into it."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / count


def template_row(path: Path) -> tuple[str, bytes, bytes]:
    """(model, fingerprint, value) of one real small entry."""
    with sqlite3.connect(path) as conn:
        query = "SELECT model, fingerprint, value FROM entries LIMIT 1"
        model, fingerprint, value = conn.execute(query).fetchone()
    return model, fingerprint, value


def bench_prune(
    entries: int, directory: Path, template: tuple[str, bytes, bytes], expired: float = 1.0
) -> dict[str, float]:
    """Prune a database of `entries` small entries whose oldest `expired` fraction expired.

    Keys are random 32-byte values, like real SHA-256 keys (sorted keys would make
    the key index unrealistically cheap to maintain).
    """
    from gauge.model.cache.api import cache_prune
    from gauge.model.cache.store import Store, database_path

    os.environ["GAUGE_CACHE_DIR"] = str(directory)
    path = database_path()
    store = Store(path)
    assert store.conn is not None
    store.conn.execute("DELETE FROM entries")
    model, fingerprint, value = template
    cutoff = int(entries * expired)
    now = time.time()
    started = time.perf_counter()
    batch = 100_000
    for start in range(0, entries, batch):
        rows = (
            (
                os.urandom(32),
                model,
                now - 10,
                now - 1 if i < cutoff else now + 3600,
                fingerprint,
                value,
            )
            for i in range(start, min(entries, start + batch))
        )
        store.put_many(rows)
    fill_s = time.perf_counter() - started
    store.close()
    size = path.stat().st_size
    started = time.perf_counter()
    pruned = cache_prune()
    prune_s = time.perf_counter() - started
    assert pruned == cutoff, pruned
    if expired == 1.0:
        return {
            "prune_entries": entries,
            "prune_s": prune_s,
            "prune_fill_s": fill_s,
            "prune_db_mb": size / 1e6,
        }
    tag = f"prune_{round(expired * 100)}pct_of_{entries}"
    return {f"{tag}_s": prune_s, f"{tag}_us_per_pruned": prune_s / cutoff * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries to prune")
    parser.add_argument("--samples", type=int, default=10_000, help="samples in the all-hits eval")
    parser.add_argument("--concurrency", type=int, default=100, help="samples in flight")
    parser.add_argument(
        "--mixed",
        type=float,
        nargs="*",
        default=[0.25, 0.75],
        help="also prune databases with only this fraction expired",
    )
    parser.add_argument("--mixed-entries", type=int, default=400_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gauge-cache-bench-") as tmp:
        os.environ["GAUGE_CACHE_DIR"] = str(Path(tmp) / "hits")
        from gauge.model.cache.store import database_path

        prompts = small_prompts(args.samples)
        asyncio.run(fill("mock/bench", prompts))
        path = database_path()
        results: dict[str, float] = {}
        results["bytes_per_small_entry"] = bytes_per_entry(path)
        results.update(bench_store_lookup(path, prompts[:5000]))
        results.update(asyncio.run(bench_worker_lookup(path, 5000)))
        runs = [asyncio.run(bench_generate_hits(prompts, args.concurrency)) for _ in range(3)]
        results["generate_hit_serial_ms"] = statistics.median(
            r["generate_hit_serial_ms"] for r in runs
        )
        results["eval_all_hits_samples_per_s"] = statistics.median(
            r["eval_all_hits_samples_per_s"] for r in runs
        )
        results["eval_no_cache_samples_per_s"] = asyncio.run(
            bench_no_cache(prompts, args.concurrency)
        )
        template = template_row(path)
        results.update(bench_prune(args.entries, Path(tmp) / "hits", template))
        for fraction in args.mixed:
            results.update(bench_prune(args.mixed_entries, Path(tmp) / "hits", template, fraction))

    targets = {
        "store_get_ms": ("<=", 0.1),
        "lookup_off_loop_ms": ("<=", 0.1),
        "eval_all_hits_samples_per_s": (">=", 5000),
        "prune_s": ("<=", 2.0),
        "bytes_per_small_entry": ("<=", 1024),
    }
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    for name, value in results.items():
        target = targets.get(name)
        verdict = ""
        if target is not None:
            op, bound = target
            ok = value <= bound if op == "<=" else value >= bound
            verdict = f"  target {op} {bound:g}: {'ok' if ok else 'MISSED'}"
        print(f"{name:32s} {value:14.4f}{verdict}")


if __name__ == "__main__":
    main()
