"""Rate control against gauge's mock OpenAI server: does gauge find the limit?

Scenarios (issue 5). Each runs the mock server in its own process and the client
(an eval with the journal on, no display) in another:

  latency   200 ms per request, N=2000, up to 200 samples in flight, no limit.
            ideal = N x 0.2 / 200. gauge adapts (starts at 32); `latency-fixed`
            is the same with max_connections=200.
  rps       a 50 requests/s limit (429 + Retry-After: 1), 50 ms latency, N=1000,
            200 samples in flight. ideal = N / 50. The server sends x-ratelimit-*
            headers; `rps-noheaders` is the same server without them.
  tpm       a tokens-per-minute limit enforced over a 1 s window (600,000/min =
            10,000 tokens/s), prompts of 5..300 words (one word = one token, the
            reply echoes the prompt), max_tokens 400, N=1000, 200 in flight.
            ideal = total tokens / 10,000 per s.
  errors    as `latency` but N=10,000 with 1% of requests answered 500;
            compared with `clean`, the same run without errors.
  hangs     as `latency` but 1% of requests never answered, attempt_timeout=2;
            reports the longest attempt (target <= 2.5 s).
  stream-latency-fixed, stream-rps-noheaders
            as `latency-fixed` and `rps-noheaders`, each sample a streamed call
            (`Model.stream`, read to its end) instead of an eval's generate: streams
            go through the same pipeline (slots, budgets, inference from 429s).
  sporadic  500 ms latency, N=1000, 32 in flight (64/s, a newcomer's eval), 5% of
            requests answered 429 with Retry-After: 1 while the rate-limit headers
            show budget left;
            compared with `sporadic-clean`, the same run without those 429s
            (target: within 1.25x: the request is retried, the key not paused).

For each: wall, wall / ideal, requests the server rejected (429), samples
completed, and the CPU the client (in its eval, start-up excluded) and the
server used per request. With --inspect-python (or INSPECT_PYTHON), Inspect AI runs the same
eval against the same kind of server (openai provider, chat completions) in the
same invocation.

    .venv/bin/python bench/rate_control.py [SCENARIO ...] [--inspect-python PY]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _harness import start_mock_openai_server

SCENARIOS: dict[str, dict[str, Any]] = {
    "latency": {"server": ["--latency", "0.2"], "n": 2000, "in_flight": 200},
    "latency-fixed": {
        "server": ["--latency", "0.2"],
        "n": 2000,
        "in_flight": 200,
        "fixed": 200,
    },
    "rps": {
        "server": ["--latency", "0.05", "--rate-limit", "50", "--rate-headers"],
        "n": 1000,
        "in_flight": 200,
    },
    "rps-noheaders": {
        "server": ["--latency", "0.05", "--rate-limit", "50"],
        "n": 1000,
        "in_flight": 200,
    },
    "tpm": {
        "server": [
            "--latency",
            "0.05",
            "--tpm",
            "600000",
            "--token-window",
            "1",
            "--rate-headers",
        ],
        "n": 1000,
        "in_flight": 200,
        "mixed": True,
    },
    "clean": {"server": ["--latency", "0.2"], "n": 10000, "in_flight": 200},
    "errors": {
        "server": ["--latency", "0.2", "--error-rate", "0.01"],
        "n": 10000,
        "in_flight": 200,
    },
    "hangs": {
        "server": ["--latency", "0.2", "--hang-rate", "0.01"],
        "n": 2000,
        "in_flight": 200,
        "attempt_timeout": 2.0,
    },
}
SCENARIOS["stream-latency-fixed"] = {**SCENARIOS["latency-fixed"], "stream": True}
SCENARIOS["stream-rps-noheaders"] = {**SCENARIOS["rps-noheaders"], "stream": True}
SCENARIOS["sporadic-clean"] = {"server": ["--latency", "0.5"], "n": 1000, "in_flight": 32}
SCENARIOS["sporadic"] = {
    "server": [*SCENARIOS["sporadic-clean"]["server"], "--sporadic-429-rate", "0.05"],
    "n": 1000,
    "in_flight": 32,
}
DEFAULT = ["latency", "rps", "rps-noheaders", "tpm", "clean", "errors", "hangs"]
INSPECT = ["latency", "rps", "tpm", "errors", "hangs"]
CLEAN = {"clean": "errors", "sporadic-clean": "sporadic"}
"""The clean run each fault scenario is compared with (run it first)."""
TPM_PER_S = 600_000 / 60


def prompts(n: int, mixed: bool) -> list[str]:
    """The inputs: short ones, or 5..300 words (seeded) for the token scenario."""
    if not mixed:
        return [f"What is {i}+1?" for i in range(n)]
    rng = random.Random(5)
    return [" ".join(["word"] * rng.randint(5, 300)) + f" {i}" for i in range(n)]


def ideal(name: str, spec: dict[str, Any]) -> float:
    """The best possible wall time for a scenario."""
    n = spec["n"]
    if name.startswith(("rps", "stream-rps")):
        return n / 50
    if name.startswith("sporadic"):
        return n * 0.5 / spec["in_flight"]
    if name == "tpm":
        # prompt words + the echoed reply (the same words, under max_tokens 400)
        total = sum(2 * len(p.split()) for p in prompts(n, True))
        return total / TPM_PER_S
    return n * 0.2 / spec["in_flight"]


# -- clients (run in a child process) ------------------------------------------------


def run_gauge(name: str, base_url: str) -> dict[str, Any]:
    """The scenario as a gauge eval; returns its measurements."""
    from gauge import GenerateConfig, Task, get_model
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.scorer import includes
    from gauge.solver import generate

    spec = SCENARIOS[name]
    inputs = prompts(spec["n"], spec.get("mixed", False))
    samples = [Sample(input=p, target=p.split()[-1], id=i) for i, p in enumerate(inputs)]
    task = Task(samples, solver=[generate()], scorer=includes(), name=name)
    config: dict[str, Any] = {"max_retries": 10}
    if spec.get("fixed"):
        config["max_connections"] = spec["fixed"]
    if spec.get("mixed"):
        config["max_tokens"] = 400
    if spec.get("attempt_timeout"):
        config["attempt_timeout"] = spec["attempt_timeout"]
    attempts: list[float] = []

    # Built before the clock, as the Inspect client builds its model (run_inspect).
    model = get_model("openai-api/bench/mock-model", base_url=base_url, api_key="bench")

    async def main() -> tuple[Any, dict[str, Any]]:
        if spec.get("stream"):
            return await stream_all(model, inputs, spec["in_flight"], GenerateConfig(**config))
        inner = model.api.generate

        async def timed(*args: Any) -> Any:  # how long each attempt really lived
            started = time.perf_counter()
            try:
                return await inner(*args)
            finally:
                attempts.append(time.perf_counter() - started)

        model.api.generate = timed  # type: ignore[method-assign]
        with tempfile.TemporaryDirectory() as log_dir:
            [result] = await eval_async(
                task,
                model,
                log_dir=log_dir,
                display=False,
                max_samples=spec["in_flight"],
                config=GenerateConfig(**config),
            )
        stats = model.rate_stats()
        await model.close()
        return result, stats

    # gauge imports aiohttp on its first request (so `import gauge` stays fast); that
    # one-off 0.13-0.17 s import would otherwise sit inside the timed run, while the
    # bare-aiohttp floor (bench/latency_floor.py) imports it before its clock starts.
    # Every client is timed from its eval's start with its imports done and its
    # model built (importing the provider's modules is start-up, not eval).
    import aiohttp  # noqa: F401

    started, cpu = time.perf_counter(), time.process_time()
    result, stats = asyncio.run(main())
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "eval_cpu": time.process_time() - cpu,
        "completed": result.completed,
        "errors": result.errors,
        "max_attempt": max(attempts) if attempts else 0.0,
        "final_concurrency": stats["concurrency"],
        "peak_in_flight": stats["peak_in_flight"],
        "client_429s": stats["rate_limit_hits"],
    }


async def stream_all(
    model: Any, inputs: list[str], in_flight: int, config: Any
) -> tuple[Any, dict[str, Any]]:
    """Each input as a streamed call read to its end, `in_flight` at a time."""
    from types import SimpleNamespace

    places = asyncio.Semaphore(in_flight)
    done = errors = 0

    async def one(prompt: str) -> None:
        nonlocal done, errors
        async with places:
            try:
                text = "".join([delta async for delta in model.stream(prompt, config=config)])
            except Exception:
                errors += 1
                return
            done += text.split()[-1:] == prompt.split()[-1:]

    await asyncio.gather(*(one(p) for p in inputs))
    stats = model.rate_stats()
    await model.close()
    return SimpleNamespace(completed=done, errors=errors), stats


def run_inspect(name: str, base_url: str) -> dict[str, Any]:
    """The scenario in Inspect AI (run by the Python that has inspect_ai installed)."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import get_model
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    spec = SCENARIOS[name]
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    model = get_model("openai/echo", base_url=base_url, responses_api=False)
    inputs = prompts(spec["n"], spec.get("mixed", False))
    dataset = MemoryDataset(
        [Sample(input=p, target=p.split()[-1], id=i) for i, p in enumerate(inputs)]
    )
    task = Task(dataset=dataset, solver=[generate()], scorer=includes())
    extra: dict[str, Any] = {}
    if spec.get("mixed"):
        extra["max_tokens"] = 400
    if spec.get("attempt_timeout"):
        extra["attempt_timeout"] = int(spec["attempt_timeout"])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as log_dir:
        [log] = eval(
            task,
            model=model,
            max_connections=spec["in_flight"],
            max_samples=spec["in_flight"],
            log_dir=log_dir,
            display="none",
            **extra,
        )
        wall = time.perf_counter() - started
        # Samples are read from the log file lazily: count them before it goes.
        completed = sum(1 for s in (log.samples or []) if s.error is None)
    return {"wall": wall, "completed": completed, "status": log.status}


# -- driver ----------------------------------------------------------------------------


def server_stats(base_url: str) -> dict[str, int]:
    """Requests and 429s the server counted."""
    url = base_url.removesuffix("/v1") + "/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, client: str, python: str) -> dict[str, Any] | str:
    """One client on one fresh server; the measurements, or why it failed."""
    server, base_url = start_mock_openai_server(*SCENARIOS[name]["server"])
    try:
        cmd = [python, __file__, name, "--child", client, "--base-url", base_url]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        server_before, client_before = process_cpu(server.pid), children_cpu()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        # The server is not reaped yet, so the children's CPU is the client's alone.
        client_cpu = children_cpu() - client_before
        server_cpu = process_cpu(server.pid) - server_before
        if out.returncode != 0:
            return f"failed: {out.stderr.strip().splitlines()[-1:]}"
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(server_stats(base_url))
        result.update(client_cpu=client_cpu, server_cpu=server_cpu, load=os.getloadavg()[0])
        return result
    finally:
        server.terminate()
        server.wait(10)


def report(name: str, client: str, result: dict[str, Any] | str, clean: float | None) -> str:
    """One line of the results table."""
    if isinstance(result, str):
        return f"| {name} | {client} | {result} |"
    spec = SCENARIOS[name]
    best = ideal(name, spec)
    ratio = result["wall"] / best
    vs_clean = f"{result['wall'] / clean:.2f}x clean" if clean and name in CLEAN.values() else ""
    longest = f"longest attempt {result['max_attempt']:.2f} s" if "max_attempt" in result else ""
    conc = (
        f"final concurrency {result['final_concurrency']}, peak {result['peak_in_flight']}"
        if "final_concurrency" in result
        else ""
    )
    client_cpu = result.get("eval_cpu", result["client_cpu"])  # start-up excluded if known
    cpu = (
        f"CPU/request client {1000 * client_cpu / spec['n']:.3f} ms + server "
        f"{1000 * result['server_cpu'] / spec['n']:.3f} ms; load {result['load']:.1f}"
    )
    notes = "; ".join(x for x in (vs_clean, longest, conc, cpu) if x)
    return (
        f"| {name} | {client} | {result['wall']:.2f} s | {best:.2f} s | {ratio:.3f}x | "
        f"{result['rejected']} | {result['completed']}/{spec['n']} | {notes} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=DEFAULT, help=", ".join(SCENARIOS))
    parser.add_argument("--child", choices=["gauge", "inspect"])
    parser.add_argument("--base-url")
    parser.add_argument("--inspect-python", default=os.environ.get("INSPECT_PYTHON"))
    parser.add_argument("--only-inspect", action="store_true", help="skip the gauge runs")
    args = parser.parse_args()
    if unknown := [s for s in args.scenarios if s not in SCENARIOS]:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.child:
        run = run_gauge if args.child == "gauge" else run_inspect
        print(json.dumps(run(args.scenarios[0], args.base_url)))
        return
    print("| scenario | client | wall | ideal | wall/ideal | rejected (429) | completed | notes |")
    print("|---|---|---|---|---|---|---|---|")
    clean: float | None = None
    for name in args.scenarios:
        clients = [] if args.only_inspect else [("gauge", sys.executable)]
        if args.inspect_python and name in INSPECT:
            clients.append(("inspect", args.inspect_python))
        for client, python in clients:
            result = measure(name, client, python)
            if name in CLEAN and client == "gauge" and isinstance(result, dict):
                clean = result["wall"]
            print(report(name, client, result, clean), flush=True)


if __name__ == "__main__":
    main()
