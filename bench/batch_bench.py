"""Provider batch jobs: client CPU and memory for 20,000 requests through OpenAI-style batches.

    .venv/bin/python bench/batch_bench.py [--requests 20000] [--size 5000] [--repeat 3]

The fake OpenAI files + batches server (gauge.testing.openai_batch_server) runs
in its own process, so its CPU is not counted. Each pass runs in a fresh child
process (so peak RSS is that pass's own) and sends `--requests` concurrent
`Model.generate` calls:

  batch       openai/ with batch={size, send_delay 0.2 s, tick 0.05 s}: every
              request goes through the batch stage, into jobs, and back
  realtime    mock/ with no batch (the provider answers at once, in process): the
              same calls through the rest of the pipeline, the floor

and reports this process's CPU time per request (`cpu_ms`), the wall time, and
the peak RSS. `batch_overhead_cpu_ms` = batch cpu_ms - realtime cpu_ms: what
batching and result mapping add per request (custom ids, collecting, the JSONL
line, upload, polling, download, parsing each answer, mapping it back).

Targets (issue 18): batch_overhead_cpu_ms <= 0.05; batch peak RSS <= 200 MB.
The median of `--repeat` passes is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

TARGETS = {"batch_overhead_cpu_ms": ("<=", 0.05), "batch_peak_rss_mb": ("<=", 200.0)}


def prompts(n: int) -> list[str]:
    return [f"question {i}: what is {i} plus {i * 7 % 13}? Answer briefly." for i in range(n)]


async def one_pass(kind: str, url: str, requests: int, size: int) -> dict[str, float]:
    from gauge.model.factory import get_model

    if kind == "batch":
        batch = {"size": size, "send_delay": 0.2, "tick": 0.05, "max_tick": 0.05}
        model = get_model(
            "openai/gpt-4o-mini",
            base_url=url,
            api_key="sk-bench",
            config={"batch": batch},
            memoize=False,
        )
    else:
        model = get_model("mock/bench", memoize=False)
    texts = prompts(requests)
    await model.generate("warm up", config={"batch": False} if kind == "batch" else None)
    cpu, wall = time.process_time(), time.perf_counter()
    outputs = await asyncio.gather(*[model.generate(t) for t in texts])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await model.close()
    assert len(outputs) == requests and all(o.completion for o in outputs)
    if kind == "batch":
        assert all((o.metadata or {}).get("batch") for o in outputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cpu_ms": cpu * 1000 / requests, "wall_s": wall, "peak_rss_mb": peak}


def child(kind: str, url: str, requests: int, size: int) -> dict[str, float]:
    """Run one pass in a fresh interpreter; its numbers."""
    code = (
        "import asyncio, json, sys; sys.path.insert(0, 'bench'); import batch_bench as b; "
        f"print(json.dumps(asyncio.run(b.one_pass({kind!r}, {url!r}, {requests}, {size}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=600
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=5_000, help="requests per job")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "gauge.testing.openai_batch_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        runs: dict[str, list[dict[str, float]]] = {"batch": [], "realtime": []}
        for _ in range(args.repeat):
            for kind in runs:  # alternating, so load changes hit both alike
                runs[kind].append(child(kind, url, args.requests, args.size))
    finally:
        server.terminate()
        server.wait(10)
    report(runs, args)


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    results: dict[str, Any] = {}
    for kind, passes in runs.items():
        for name in ("cpu_ms", "wall_s", "peak_rss_mb"):
            results[f"{kind}_{name}"] = round(statistics.median(p[name] for p in passes), 4)
    results["batch_overhead_cpu_ms"] = round(
        results["batch_cpu_ms"] - results["realtime_cpu_ms"], 4
    )
    results["batch_peak_rss_mb"] = results.pop("batch_peak_rss_mb")
    print(f"{args.requests} requests, jobs of {args.size}, median of {args.repeat} passes")
    for name, value in results.items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            op, bound = target
            ok = value <= bound if op == "<=" else value >= bound
            verdict = f"  target {op} {bound}: {'ok' if ok else 'MISSED'}"
        print(f"  {name:24} {value}{verdict}")


if __name__ == "__main__":
    main()
