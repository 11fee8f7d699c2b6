"""Loglikelihood benchmark: scoring throughput, and generate's hot path unchanged.

Scenarios (client CPU per call/item with time.process_time, so a loaded machine
mostly stretches wall time, not these numbers):
  generate     Model.generate on the mock provider, 64 workers: CPU per call. Run it
               against another checkout (PYTHONPATH=OTHER/src) to compare before/after.
  mock         Model.loglikelihood on the mock provider, 4,000 items per call:
               CPU per item through batching + retry + rate control (cache off)
  mock-cache   the same, all hits from the SQLite cache (second pass)
  hf           hf/gauge-tiny: 512 multiple-choice items, batched vs one item per call
  hf-calls     hf/gauge-tiny: 128 concurrent calls of 4 items (an eval's per-sample
               multiple choice), which the hf score queue merges into shared passes

    .venv/bin/python bench/loglikelihood_bench.py              # all scenarios
    .venv/bin/python bench/loglikelihood_bench.py generate -n 60000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import measure

SCENARIOS = ("generate", "mock", "mock-cache", "hf", "hf-calls")


async def generate(n: int) -> dict[str, Any]:
    from gauge import get_model

    model = get_model("mock/bench", memoize=False)
    result = await measure("generate", lambda: model.generate("hello there"), n, 64)
    import gauge.model.model as module

    result["module"] = module.__file__
    return result


async def score_mock(n: int, cached: bool) -> dict[str, Any]:
    from gauge import get_model

    model = get_model("mock/bench", memoize=False, score_batch_size=32)
    pairs = [(f"Question {i}: what is {i}+1? Answer:", f" {i + 1}") for i in range(n)]
    if cached:
        await model.loglikelihood(pairs, cache=True)  # fill
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = await model.loglikelihood(pairs, cache=True if cached else None)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert len(results) == n
    return {
        "name": "mock-cache" if cached else "mock",
        "items_s": n / wall,
        "cpu_us_per_item": cpu / n * 1e6,
    }


async def score_hf(n: int) -> dict[str, Any]:
    from gauge import get_model

    model = get_model("hf/gauge-tiny", memoize=False, device="cpu")
    rows = [(a, b) for a in range(30) for b in range(30)][: n // 4]
    pairs = [
        (f"<|user|>What is {a}+{b}?<|assistant|>", f"{a + b + d}<|eos|>")
        for a, b in rows
        for d in (0, 1, 10, 100)
    ]
    await model.loglikelihood(pairs[:8])  # load the model
    cpu0, wall0 = time.process_time(), time.perf_counter()
    batched = await model.loglikelihood(pairs)
    batched_cpu, batched_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    single_n = min(len(pairs), 128)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for pair in pairs[:single_n]:
        await model.loglikelihood([pair])
    single_cpu, single_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    right = sum(
        max(range(4), key=lambda j, i=i: batched[4 * i + j][0]) == 0  # type: ignore[misc]
        for i in range(len(rows))
    )
    return {
        "name": "hf",
        "items": len(pairs),
        "batched_items_s": len(pairs) / batched_wall,
        "batched_cpu_ms_per_item": batched_cpu / len(pairs) * 1000,
        "single_items_s": single_n / single_wall,
        "single_cpu_ms_per_item": single_cpu / single_n * 1000,
        "mc_accuracy": right / len(rows),
    }


async def score_hf_calls(n: int) -> dict[str, Any]:
    from gauge import get_model
    from gauge.model.providers.hf import HuggingFaceAPI
    from gauge.model.providers.hf.scoring import score_queue

    model = get_model("hf/gauge-tiny", memoize=False, device="cpu")
    await model.loglikelihood([("<|user|>What is 1+1?<|assistant|>", "2")])  # load
    calls = [
        [(f"<|user|>What is {a}+{b}?<|assistant|>", f"{a + b + d}<|eos|>") for d in (0, 1, 10, 100)]
        for a in range(30)
        for b in range(30)
    ][:n]
    assert isinstance(model.api, HuggingFaceAPI)
    queue = score_queue(model.api._local)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(model.loglikelihood(c) for c in calls))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "name": "hf-calls",
        "calls": len(calls),
        "forward_runs": len(queue.runs) - 1,
        "items_s": 4 * len(calls) / wall,
        "cpu_ms_per_item": cpu / (4 * len(calls)) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("-n", type=int, default=0, help="calls or items (scenario default)")
    args = parser.parse_args()
    os.environ["GAUGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="gauge-bench-cache-")
    for name in args.scenarios or SCENARIOS:
        if name == "generate":
            result = asyncio.run(generate(args.n or 40_000))
        elif name in ("mock", "mock-cache"):
            result = asyncio.run(score_mock(args.n or 4000, name == "mock-cache"))
        elif name == "hf":
            result = asyncio.run(score_hf(args.n or 512))
        else:
            result = asyncio.run(score_hf_calls(args.n or 128))
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})
        )


if __name__ == "__main__":
    main()
