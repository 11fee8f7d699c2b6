"""Eval runner benchmark: samples/s, client CPU per sample and peak RSS.

Scenarios (each runs in its own subprocess so RSS is its own):
  mock-raw  bare Model.generate on the mock provider, 64 workers, no runner (the floor)
  mock      the mock provider in process (target >= 20,000 samples/s)
  mock-100k 100,000 samples on the mock provider (target: RSS <= 200 MB)
  openai    the zero-latency mock OpenAI server on 127.0.0.1, 64 concurrent
            (target >= 4,000 samples/s, <= 0.25 ms CPU/sample, RSS <= 120 MB);
            the server runs in a separate process so its CPU is not counted
  inspect-mock, inspect-openai
            the same evals in Inspect AI (mockllm in process; openai provider
            against the same mock server), 2,000 samples, when a Python with
            inspect_ai is given (--inspect-python or INSPECT_PYTHON)

Every run has the journal and the progress display on (rendered to a terminal
console writing to /dev/null, so the drawing cost is paid).

    .venv/bin/python bench/eval_bench.py                 # all scenarios
    .venv/bin/python bench/eval_bench.py mock -n 20000   # one scenario
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import start_mock_openai_server

INSPECT_SAMPLES = 2_000
"""Inspect runs fewer samples (it is ~100x slower); rates are per sample either way."""


def run_one(scenario: str, n: int, concurrency: int, base_url: str | None) -> dict[str, float]:
    """Run one eval in this process and measure it."""
    from rich.console import Console

    from gauge import GenerateConfig, Task
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.scorer import match
    from gauge.solver import generate

    samples = [Sample(input=f"What is {i}+1?", target=str(i + 1), id=i) for i in range(n)]
    task = Task(samples, solver=[generate()], scorer=match(), name="bench")
    rss_start_mb = _rss_now_mb()  # the dataset is built: what follows is the runner's
    null = open(os.devnull, "w")  # noqa: SIM115
    console = Console(file=null, force_terminal=True, width=160)
    if scenario.startswith("mock"):
        model, args = "mock/bench", {"max_connections": concurrency}
    else:
        model, args = "openai-api/bench/echo", {}
    with tempfile.TemporaryDirectory() as log_dir:
        started_wall = time.perf_counter()
        started_cpu = time.process_time()
        results = asyncio.run(
            eval_async(
                task,
                model,
                model_base_url=base_url,
                model_args=args,
                config=GenerateConfig(max_connections=concurrency),
                log_dir=log_dir,
                max_connections=concurrency,
                console=console,
            )
        )
        wall = time.perf_counter() - started_wall
        cpu = time.process_time() - started_cpu
        with open(results[0].journal, "rb") as journal:
            lines = sum(1 for _ in journal)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "samples": n,
        "completed": results[0].completed,
        "journal_lines": lines,
        "seconds": round(wall, 3),
        "samples_per_s": round(n / wall),
        "cpu_ms_per_sample": round(cpu / n * 1000, 4),
        "rss_before_run_mb": round(rss_start_mb, 1),
        "peak_rss_mb": round(rss_mb, 1),
    }


def _rss_now_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_raw(n: int, concurrency: int) -> dict[str, float]:
    """Bare `Model.generate` on the mock provider, no runner: the floor for `mock`."""
    from gauge.model import get_model

    model = get_model("mock/bench", max_connections=concurrency)

    async def drive() -> None:
        todo = iter(range(n))

        async def worker() -> None:
            for i in todo:
                await model.generate(f"What is {i}+1?")

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    started_wall = time.perf_counter()
    started_cpu = time.process_time()
    asyncio.run(drive())
    wall = time.perf_counter() - started_wall
    cpu = time.process_time() - started_cpu
    return {
        "samples": n,
        "seconds": round(wall, 3),
        "samples_per_s": round(n / wall),
        "cpu_ms_per_sample": round(cpu / n * 1000, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_inspect(scenario: str, n: int, concurrency: int, base_url: str | None) -> dict[str, Any]:
    """The same eval in Inspect AI (run by the Python that has inspect_ai installed)."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    if scenario == "inspect-mock":

        def outputs() -> Any:
            # Usage is set so mockllm does not count tokens with tiktoken (a download).
            for i in range(n):
                out = ModelOutput.from_content(model="mockllm/model", content=f"What is {i}+1?")
                out.usage = ModelUsage(input_tokens=4, output_tokens=4, total_tokens=8)
                yield out

        model = get_model("mockllm/model", custom_outputs=outputs())
    else:
        os.environ.setdefault("OPENAI_API_KEY", "bench")
        # Chat completions (what the mock server speaks), not the Responses API.
        model = get_model("openai/echo", base_url=base_url, responses_api=False)
    dataset = MemoryDataset(
        [Sample(input=f"What is {i}+1?", target=str(i + 1), id=i) for i in range(n)]
    )
    task = Task(dataset=dataset, solver=[generate()], scorer=match())
    rss_start_mb = _rss_now_mb()
    with tempfile.TemporaryDirectory() as log_dir:
        started_wall = time.perf_counter()
        started_cpu = time.process_time()
        [log] = eval(
            task,
            model=model,
            max_connections=concurrency,
            max_samples=concurrency,
            log_dir=log_dir,
        )
        wall = time.perf_counter() - started_wall
        cpu = time.process_time() - started_cpu
    return {
        "samples": n,
        "status": log.status,
        "seconds": round(wall, 3),
        "samples_per_s": round(n / wall),
        "cpu_ms_per_sample": round(cpu / n * 1000, 4),
        "rss_before_run_mb": round(rss_start_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["mock-raw", "mock", "mock-100k", "openai"])
    parser.add_argument("-n", type=int, default=None, help="samples (default per scenario)")
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument(
        "--inspect-python",
        default=os.environ.get("INSPECT_PYTHON"),
        help="a Python with inspect_ai installed: adds inspect-mock and inspect-openai",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scenario = args.scenarios[0]
        if scenario == "mock-raw":
            print(json.dumps(run_raw(args.n, args.concurrency)))
        elif scenario.startswith("inspect"):
            print(json.dumps(run_inspect(scenario, args.n, args.concurrency, args.base_url)))
        else:
            print(json.dumps(run_one(scenario, args.n, args.concurrency, args.base_url)))
        return
    scenarios = list(args.scenarios)
    if args.inspect_python and args.scenarios == parser.get_default("scenarios"):
        scenarios += ["inspect-mock", "inspect-openai"]
    for scenario in scenarios:
        n = args.n or (100_000 if scenario == "mock-100k" else 10_000)
        if scenario.startswith("inspect") and not args.n:
            n = INSPECT_SAMPLES
        server = None
        base_url = None
        if scenario.endswith("openai"):
            server, base_url = start_mock_openai_server()
        python = sys.executable
        if scenario.startswith("inspect"):
            if not args.inspect_python:
                print(f"{scenario}: skipped (give --inspect-python or INSPECT_PYTHON)")
                continue
            python = args.inspect_python
        try:
            cmd = [
                python,
                __file__,
                scenario,
                "--child",
                "-n",
                str(n),
                "-c",
                str(args.concurrency),
            ]
            if base_url:
                cmd += ["--base-url", base_url]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"{scenario}: failed\n{out.stderr[-2000:]}")
                continue
            # Inspect prints its own summary first: the measurement is the last line.
            print(f"{scenario}: {out.stdout.strip().splitlines()[-1].strip()}")
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
