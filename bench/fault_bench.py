"""Fault injection at scale: an eval of N samples against the mock server with every fault mixed in.

Scenarios (each runs the mock OpenAI server in its own process; the eval runs here):

  clean      N samples, 50 ms latency, 64 in flight, no faults: the baseline.
  mix        the same with, per request: 2 % answered 500, 2 % connection resets,
             2 % malformed JSON, 1 % hung, 2 % trickled (4 pieces 0.4 s apart, so
             1.2 s: past attempt_timeout=1 and retried), and 429 storms with
             Retry-After (0.2 % of requests start one; 0.5 s each).
             max_retries=3, attempt_timeout=1, timeout=30.
  mix-nowait as `mix`, but the storms' 429s carry no Retry-After.
  mix-nostorm as `mix` without the storms (what the other faults cost alone).
  storms     only the storms of `mix` (with Retry-After); storms-nowait: without.
  stream     N Model.stream calls (64 at once): 2 % truncated before [DONE],
             2 % trickled 0.05 s per chunk, 1 % reset, 2 % answered 500.
             (The eval runner never streams, so streams are driven directly.)

For each: wall (and / clean), client CPU, samples done, errors by cause, retries,
faults the server injected by kind. Every sample must end done or with an error;
the script checks that done + errors = N.

    .venv/bin/python bench/fault_bench.py [SCENARIO ...] [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from _harness import start_mock_openai_server

BASE = ["--latency", "0.05", "--seed", "7"]
MIX = [
    "--error-rate",
    "0.02",
    "--reset-rate",
    "0.02",
    "--malformed-rate",
    "0.02",
    "--hang-rate",
    "0.01",
    "--trickle-rate",
    "0.02",
    "--trickle-delay",
    "0.4",
    "--storm-rate",
    "0.002",
    "--storm-seconds",
    "0.5",
]
SCENARIOS: dict[str, list[str]] = {
    "clean": BASE,
    "mix": BASE + MIX,
    "mix-nowait": [*BASE, *MIX, "--storm-no-retry-after"],
    "mix-nostorm": [*BASE, *MIX[:-4]],
    "storms": [*BASE, *MIX[-4:]],
    "storms-nowait": [*BASE, *MIX[-4:], "--storm-no-retry-after"],
    "stream": [
        *BASE,
        "--truncate-rate",
        "0.02",
        "--trickle-rate",
        "0.02",
        "--trickle-delay",
        "0.05",
        "--reset-rate",
        "0.01",
        "--error-rate",
        "0.02",
    ],
}
IN_FLIGHT = 64

CAUSES = [
    ("exceeded timeout=", "total timeout"),
    ("HTTP 500", "HTTP 500"),
    ("HTTP 429", "HTTP 429"),
    ("Connection reset", "connection reset"),
    ("Server disconnected", "connection reset"),
    ("not JSON", "malformed JSON"),
    ("payload is not completed", "stream cut before [DONE]"),
    ("truncated", "stream cut before [DONE]"),
    ("attempt_timeout", "attempt timeout (hung or trickled)"),
]


def cause(message: str) -> str:
    """The fault an error message names."""
    return next((name for needle, name in CAUSES if needle in message), f"other: {message[:80]}")


def server_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats


async def run_eval(base_url: str, n: int, log_dir: str) -> dict[str, Any]:
    from gauge import GenerateConfig, Task
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.scorer import match

    samples = [Sample(input=f"alpha beta q{i}", target=f"alpha beta q{i}", id=i) for i in range(n)]
    task = Task(samples, scorer=match(location="exact"), name="faults")
    config = GenerateConfig(max_retries=3, attempt_timeout=1.0, timeout=30.0)
    [result] = await eval_async(
        task,
        "openai-api/mock/m",
        model_base_url=base_url,
        config=config,
        max_errors=n,
        max_samples=IN_FLIGHT,
        display=False,
        log_dir=log_dir,
    )
    errors: Counter[str] = Counter()
    retries = 0
    for line in Path(result.journal).read_bytes().splitlines():
        record = json.loads(line)
        if record["type"] != "sample":
            continue
        retries += record["retries"]
        if record["error"]:
            errors[cause(record["error"]["message"])] += 1
    return {
        "done": result.completed,
        "errors": dict(errors),
        "retries": retries,
        "rate_control": json.loads(Path(result.journal).read_bytes().splitlines()[-1])[
            "rate_control"
        ],
    }


async def run_streams(base_url: str, n: int) -> dict[str, Any]:
    from gauge import GenerateConfig, get_model

    model = get_model("openai-api/mock/m", base_url=base_url, memoize=False)
    config = GenerateConfig(max_retries=3, attempt_timeout=1.0, timeout=30.0)
    errors: Counter[str] = Counter()
    done = 0
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        nonlocal done
        prompt = f"alpha beta gamma delta q{i}"
        async with gate:
            try:
                text = "".join([d async for d in model.stream(prompt, config=config)])
            except Exception as ex:
                errors[cause(str(ex))] += 1
                return
        if text != prompt:
            errors["incomplete text returned as complete"] += 1
        else:
            done += 1

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await model.close()
    return {"done": done, "errors": dict(errors), "retries": None}


def measure(name: str, n: int) -> dict[str, Any]:
    server, base_url = start_mock_openai_server(*SCENARIOS[name])
    try:
        with TemporaryDirectory() as log_dir:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if name == "stream":
                out = asyncio.run(run_streams(base_url, n))
            else:
                out = asyncio.run(run_eval(base_url, n, log_dir))
            out["wall"] = time.perf_counter() - wall0
            out["cpu"] = time.process_time() - cpu0
        stats = server_stats(base_url)
    finally:
        server.terminate()
        server.wait()
    out["requests"] = stats["requests"]
    out["faults"] = stats.get("faults", {})
    out["n"] = n
    total = out["done"] + sum(out["errors"].values())
    if total != n:
        raise SystemExit(f"{name}: done + errors = {total}, not {n}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=", ".join(SCENARIOS) + " (default: all)")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    if unknown := [s for s in args.scenarios if s not in SCENARIOS]:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    args.scenarios = args.scenarios or list(SCENARIOS)
    names = args.scenarios if "clean" in args.scenarios else ["clean", *args.scenarios]
    clean_wall = None
    print(f"N={args.n}, {IN_FLIGHT} in flight, mock latency 50 ms")
    for name in names:
        out = measure(name, args.n)
        if name == "clean":
            clean_wall = out["wall"]
        ratio = f"{out['wall'] / clean_wall:.2f}x clean" if clean_wall else "-"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(out["errors"].items())) or "none"
        faults = ", ".join(f"{k} {v}" for k, v in sorted(out["faults"].items())) or "none"
        print(
            f"{name:10s} wall {out['wall']:6.2f} s ({ratio}), client CPU {out['cpu']:.2f} s, "
            f"requests {out['requests']}, done {out['done']}/{out['n']}, errors: {errors}; "
            f"retries {out['retries']}; injected: {faults}",
            flush=True,
        )
        if "rate_control" in out:
            rc = out["rate_control"]
            print(
                f"{'':10s} rate control: rate-limit hits {rc['rate_limit_hits']}, "
                f"pauses {rc['pauses']}, concurrency {rc['concurrency']}, "
                f"inferred rpm budget {rc['rpm']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
