"""Response-cache hit cost: what one `Model.generate(..., cache=True)` hit costs the client.

    .venv/bin/python bench/cache_hit_bench.py [--hits 5000] [--samples 10000] [--repeat 3]
    .venv/bin/python bench/cache_hit_bench.py --compare /tmp/before-src   # two trees, one run

Measures, on a database filled first (in a temporary GAUGE_CACHE_DIR):

  mock_nocache_ms      sequential `await model.generate(p)` on mock/, cache off (the floor)
  mock_hit_ms          sequential hits on mock/
  openai_hit_ms        sequential hits on an openai-api/ model pointed at 127.0.0.1
                       (the mock OpenAI server fills the cache and is then stopped: a
                       hit sends nothing)
  hits_per_s           hits in one event loop, 100 callers (mock/)
  eval_all_hits_sps    gauge's eval runner, mock/, cache on, second run of the same
                       eval (every sample a hit), samples/s
  eval_cache_off_sps   the same eval with the cache off (the mock answers at once):
                       what the runner costs without any cache

Each is wall time, best of three passes over distinct prompts; the *_cpu_* twins
are this process's CPU time over the same passes (steadier on a shared machine).

Targets (the cache-hit issue): mock_hit_ms and openai_hit_ms <= 0.06;
hits_per_s >= 15,000; eval_all_hits_sps >= 8,000.

With --compare DIR, each measurement runs in a subprocess per source tree
(PYTHONPATH=DIR, then this checkout's src or --src), alternating, `--repeat`
times, so before/after ratios come from one run on one machine. A tree as
committed: `mkdir -p /tmp/x && git archive HEAD src | tar -x -C /tmp/x`, then
--compare /tmp/x/src.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TARGETS = {
    "mock_hit_ms": ("<=", 0.06),
    "mock_hit_cpu_ms": ("<=", 0.06),
    "openai_hit_ms": ("<=", 0.06),
    "openai_hit_cpu_ms": ("<=", 0.06),
    "hits_per_s": (">=", 15_000),
    "hits_per_cpu_s": (">=", 15_000),
    "eval_all_hits_sps": (">=", 8_000),
    "eval_all_hits_cpu_sps": (">=", 8_000),
}


def prompts(n: int, tag: str) -> list[str]:
    return [f"{tag} question {i}: what is {i} plus {i * 7 % 13}? Answer." for i in range(n)]


async def _fill(model: Any, items: list[str]) -> None:
    for start in range(0, len(items), 500):
        await asyncio.gather(*(model.generate(p, cache=True) for p in items[start : start + 500]))


async def _sequential(model: Any, items: list[str], cache: bool) -> tuple[float, float]:
    """(wall ms, CPU ms) per call, best of three passes (each prompt once a pass)."""
    best = (float("inf"), float("inf"))
    for _ in range(3):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for p in items:
            output = await model.generate(p, cache=cache)
        wall = (time.perf_counter() - wall0) / len(items) * 1000
        cpu = (time.process_time() - cpu0) / len(items) * 1000
        if cache:
            assert output.metadata == {"cache": "hit"}, output.metadata
        best = min(best, (wall, cpu))
    return best


async def _concurrent_hits(model: Any, items: list[str], concurrency: int) -> tuple[float, float]:
    """(hits per wall second, hits per CPU second), `concurrency` callers, best of three."""

    async def worker(queue: Iterator[str]) -> int:
        hits = 0
        for p in queue:
            out = await model.generate(p, cache=True)
            hits += out.metadata == {"cache": "hit"}
        return hits

    best = (0.0, 0.0)
    for _ in range(3):
        queue = iter(items)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        hits = sum(await asyncio.gather(*(worker(queue) for _ in range(concurrency))))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        assert hits == len(items), f"only {hits} hits"
        best = max(best, (hits / wall, hits / max(cpu, 1e-9)))
    return best


def run_generate(n: int) -> dict[str, float]:
    """Sequential hit latency (mock/ and openai-api/) and hits/s, in this process."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _harness import start_mock_openai_server

    from gauge.model.factory import get_model

    mock_prompts, openai_prompts = prompts(n, "mock"), prompts(n, "openai")
    server, base_url = start_mock_openai_server()
    os.environ["LOCAL_API_KEY"] = "bench"
    try:
        openai = get_model("openai-api/local/m", base_url=base_url, memoize=False)
        mock = get_model("mock/bench", memoize=False)

        async def fill() -> None:
            await _fill(mock, mock_prompts)
            await _fill(openai, openai_prompts)

        asyncio.run(fill())
    finally:
        server.kill()
        server.wait()

    async def measure() -> dict[str, float]:
        # Fresh models: nothing remembered from the fill but what the cache holds.
        mock = get_model("mock/bench", memoize=False)
        openai = get_model("openai-api/local/m", base_url=base_url, memoize=False)
        result: dict[str, float] = {}
        for p in mock_prompts[:200]:  # warm the no-cache path
            await mock.generate(p)
        wall, cpu = await _sequential(mock, mock_prompts, False)
        result["mock_nocache_ms"], result["mock_nocache_cpu_ms"] = wall, cpu
        wall, cpu = await _sequential(mock, mock_prompts, True)
        result["mock_hit_ms"], result["mock_hit_cpu_ms"] = wall, cpu
        wall, cpu = await _sequential(openai, openai_prompts, True)
        result["openai_hit_ms"], result["openai_hit_cpu_ms"] = wall, cpu
        wall, cpu = await _concurrent_hits(mock, mock_prompts, 100)
        result["hits_per_s"], result["hits_per_cpu_s"] = wall, cpu
        calls = mock.api.calls  # type: ignore[attr-defined]
        assert calls == 200 + 3 * len(mock_prompts), f"a hit reached the provider ({calls})"
        return result

    return asyncio.run(measure())


def run_eval(n: int) -> dict[str, float]:
    """gauge's eval runner on mock/, cache on: samples/s of the second (all-hit) run."""
    from rich.console import Console

    from gauge import GenerateConfig, Task
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.scorer import match
    from gauge.solver import generate

    samples = [Sample(input=f"What is {i}+1?", target=str(i + 1), id=i) for i in range(n)]
    task = Task(samples, solver=[generate()], scorer=match(), name="bench")
    null = open(os.devnull, "w")  # noqa: SIM115
    console = Console(file=null, force_terminal=True, width=160)
    rates = []
    with tempfile.TemporaryDirectory() as log_dir:
        for cache in (True, True, False):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            results = asyncio.run(
                eval_async(
                    task,
                    "mock/bench",
                    config=GenerateConfig(cache=cache, max_connections=100),
                    log_dir=log_dir,
                    max_connections=100,
                    console=console,
                )
            )
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            rates.append((n / wall, n / cpu))
            assert results[0].status == "success", results[0].status
    # The first run (every sample a miss) also pays this process's start-up; the
    # last, cache off with the mock answering at once, is the runner's own floor.
    return {
        "eval_first_run_sps": rates[0][0],
        "eval_all_hits_sps": rates[1][0],
        "eval_all_hits_cpu_sps": rates[1][1],
        "eval_cache_off_sps": rates[2][0],
        "eval_cache_off_cpu_sps": rates[2][1],
    }


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gauge-cache-hit-bench-") as tmp:
        os.environ["GAUGE_CACHE_DIR"] = tmp
        result = run_generate(args.hits) if args.child == "generate" else run_eval(args.samples)
    print(json.dumps(result))


def spawn(kind: str, args: argparse.Namespace, src: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, __file__, "--child", kind]
    cmd += ["--hits", str(args.hits), "--samples", str(args.samples)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} run on {src} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=5_000, help="distinct prompts per model")
    parser.add_argument("--samples", type=int, default=10_000, help="samples in the eval")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree (medians shown)")
    parser.add_argument("--compare", type=Path, help="another tree's src/ to run first")
    parser.add_argument("--src", type=Path, help="the src/ to measure (default: this checkout's)")
    parser.add_argument("--child", choices=["generate", "eval"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    here = args.src or Path(__file__).resolve().parent.parent / "src"
    trees = {"before": args.compare, "after": here} if args.compare else {"this": here}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, src in trees.items():
            result = spawn("generate", args, src)
            result.update(spawn("eval", args, src))
            runs[name].append(result)
    import sqlite3

    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, medians of {args.repeat} runs"
    )
    names = list(runs[next(iter(trees))][0])
    header = "".join(f"{n:>14s}" for n in trees)
    ratio = f"{'after/before':>14s}" if args.compare else ""
    print(f"{'':24s}{header}{ratio}")
    for metric in names:
        values = {n: statistics.median(r[metric] for r in runs[n]) for n in trees}
        line = f"{metric:24s}" + "".join(f"{v:14.4f}" for v in values.values())
        if args.compare:
            line += f"{values['after'] / values['before']:14.2f}"
        target = TARGETS.get(metric)
        if target is not None:
            op, bound = target
            last = list(values.values())[-1]
            ok = last <= bound if op == "<=" else last >= bound
            line += f"   target {op} {bound:g}: {'ok' if ok else 'MISSED'}"
        print(line)


if __name__ == "__main__":
    main()
