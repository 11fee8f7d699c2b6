"""Rate state shared by several processes through Redis (docs/scale.md): one key, N processes.

Each scenario runs the mock OpenAI server in its own process, a fresh redis-server
(a free port, a temp dir, no persistence) and N client processes, each a gauge eval
(journal on, no display, 200 samples in flight). The clients start their evals
together (each says READY once imported and built, then waits for the go) and
wall = last finish - first start.

  rps            4 processes x 250 samples, one key limited to 50 requests/s (429 +
                 Retry-After: 1 past it), 50 ms latency, x-ratelimit-* headers.
                 ideal = 1000 / 50 = 20 s. Targets: every process finishes, wall
                 <= 1.10x ideal, <= 50 429s in all.
  rps-noheaders  the same without headers: the rate is measured from 429s.
  rps-local, rps-noheaders-local
                 the same 4 processes without shared state (each its own budget).
  tpm            2 processes x 500 samples sharing a 600,000 tokens/min limit
                 enforced over 1 s windows (prompts of 5..300 words, echoed; max_tokens
                 400), headers. ideal = all tokens / 10,000 per s (generous to the
                 limit: an empty 1 s window takes 10,000 at once, so the least possible
                 is ~1 s less). Targets: <= 1.10x; the tokens the server accepted
                 (its request log) never more than the limit in any 1 s or 60 s window.
  tpm-local      the same without shared state.
  cpu            one process, zero-latency mock, 32 calls in flight, 4000 calls each
                 way, alternated in process / shared / in process / shared: calls/s and
                 the client's CPU per call, with a request or token budget that never
                 binds (rpm 10M: grants are taken; tpm 1G: room in the window is asked
                 for) and without one (concurrency leases only).
                 Targets: <= 0.03 ms more CPU per call shared, calls/s >= 0.8x.
  kill           rps, and kill -9 one of the 4 processes 6 s in: seconds until the
                 other three send at full rate again (>= 90 % of the limit over 1 s).
                 Target <= 5 s.

    .venv/bin/python bench/shared_state.py [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from bisect import bisect_left
from pathlib import Path
from typing import Any

from _harness import measure, start_mock_openai_server

from gauge.testing.faults import read_log
from gauge.testing.redis_server import RedisMissing, RedisServer

RPS = ["--latency", "0.05", "--rate-limit", "50"]
TPM = ["--latency", "0.05", "--tpm", "600000", "--token-window", "1", "--rate-headers"]
SCENARIOS: dict[str, dict[str, Any]] = {
    "rps": {"server": [*RPS, "--rate-headers"], "processes": 4, "n": 250, "shared": True},
    "rps-noheaders": {"server": RPS, "processes": 4, "n": 250, "shared": True},
    "rps-local": {"server": [*RPS, "--rate-headers"], "processes": 4, "n": 250},
    "rps-noheaders-local": {"server": RPS, "processes": 4, "n": 250},
    "tpm": {"server": TPM, "processes": 2, "n": 500, "shared": True, "mixed": True},
    "tpm-local": {"server": TPM, "processes": 2, "n": 500, "mixed": True},
    "kill": {"server": [*RPS, "--rate-headers"], "processes": 4, "n": 250, "shared": True},
    "cpu": {"server": ["--latency", "0"]},
}
DEFAULT = ["rps", "rps-noheaders", "rps-local", "rps-noheaders-local", "tpm", "cpu", "kill"]
LIMIT = 50
TPM_PER_S = 600_000 / 60
BUDGETS = ("rpm 10M", "tpm 1G", "no budget")
"""The cpu scenario's budgets: never binding (grants taken, room asked) and none."""
KILL_AT = 6.0
FULL_RATE = 0.9


def prompts(n: int, mixed: bool, offset: int = 0) -> list[str]:
    """Short prompts, or 5..300 words (seeded, the same as rate_control.py's tpm)."""
    if not mixed:
        return [f"What is {i}+1?" for i in range(offset, offset + n)]
    rng = random.Random(5)
    every = [" ".join(["word"] * rng.randint(5, 300)) + f" {i}" for i in range(offset + n)]
    return every[offset:]


def ideal(name: str, spec: dict[str, Any]) -> float:
    """The best possible wall time."""
    total = spec["processes"] * spec["n"]
    if spec.get("mixed"):
        return sum(2 * len(p.split()) for p in prompts(total, True)) / TPM_PER_S
    return total / LIMIT


# -- client processes ---------------------------------------------------------------------


def child_eval(args: argparse.Namespace) -> None:
    """One client: an eval of its share of the samples, started on the driver's go."""
    from gauge import GenerateConfig, Task, get_model
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.model.rate import shared
    from gauge.scorer import includes
    from gauge.solver import generate

    spec = SCENARIOS[args.scenario]
    if args.redis:
        shared.use(args.redis)
    inputs = prompts(spec["n"], spec.get("mixed", False), args.index * spec["n"])
    samples = [Sample(input=p, target=p.split()[-1], id=i) for i, p in enumerate(inputs)]
    task = Task(samples, solver=[generate()], scorer=includes(), name=args.scenario)
    config = GenerateConfig(max_tokens=400) if spec.get("mixed") else GenerateConfig()
    model = get_model("openai-api/bench/mock-model", base_url=args.base_url, api_key="bench")
    import aiohttp  # noqa: F401  (imported before the clock, as rate_control.py does)

    print("READY", flush=True)
    sys.stdin.readline()
    started, cpu = time.time(), time.process_time()

    async def main() -> tuple[Any, dict[str, Any]]:
        with tempfile.TemporaryDirectory() as log_dir:
            [result] = await eval_async(
                task, model, log_dir=log_dir, display=False, max_samples=200, config=config
            )
        stats = model.rate_stats()
        await model.close()
        return result, stats

    try:
        result, stats = asyncio.run(main())
        outcome = {"completed": result.completed, "errors": result.errors, "died": None}
    except Exception as ex:  # a run stopped by an error: what "died" means here
        outcome = {"completed": None, "errors": None, "died": f"{type(ex).__name__}: {ex}"[:200]}
        stats = {}
    print(
        json.dumps(
            {
                "started": started,
                "finished": time.time(),
                "cpu": time.process_time() - cpu,
                "client_429s": stats.get("rate_limit_hits"),
                **outcome,
            }
        ),
        flush=True,
    )


def child_cpu(args: argparse.Namespace) -> None:
    """Calls/s and CPU per call, in process and shared, alternated in one process."""
    from gauge import GenerateConfig, get_model
    from gauge.model import shared as shared_state

    out: list[dict[str, Any]] = []
    for budget in BUDGETS:
        config = GenerateConfig(
            rpm=10_000_000 if budget == "rpm 10M" else None,
            tpm=1_000_000_000 if budget == "tpm 1G" else None,
            max_connections=32,
        )
        for mode in ("in process", "shared", "in process", "shared"):
            shared_state.use(args.redis if mode == "shared" else None)

            async def run(mode: str = mode, config: Any = config) -> dict[str, Any]:
                model = get_model(
                    "openai-api/bench/mock-model",
                    base_url=args.base_url,
                    api_key="bench",
                    memoize=False,
                )

                async def call() -> None:
                    await model.generate("What is 1+1?", config=config)

                figures = await measure(mode, call, 4000, 32)
                await model.close()
                await shared_state.close()
                return figures

            figures = asyncio.run(run())
            figures["budget"] = budget
            out.append(figures)
    print(json.dumps(out), flush=True)


# -- driver -----------------------------------------------------------------------------


class Redis(RedisServer):
    """A redis-server for one scenario, in a temporary directory, with its CPU time."""

    def __init__(self) -> None:
        try:
            super().__init__(tempfile.mkdtemp(prefix="gauge-bench-redis-"))
        except RedisMissing as ex:
            raise SystemExit(str(ex)) from None
        self.start()

    def cpu(self) -> float:
        """Seconds of CPU the server used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop it and remove its directory."""
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def server_stats(base_url: str) -> dict[str, int]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as reply:
        return dict(json.loads(reply.read()))


def start_clients(name: str, base_url: str, redis: str | None) -> list[subprocess.Popen[str]]:
    spec = SCENARIOS[name]
    clients = []
    for index in range(spec["processes"]):
        cmd = [sys.executable, __file__, name, "--child", "eval", "--base-url", base_url]
        cmd += ["--index", str(index)] + (["--redis", redis] if redis else [])
        clients.append(
            subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for client in clients:
        assert client.stdout is not None
        line = client.stdout.readline().strip()
        if line != "READY":
            raise SystemExit(f"client did not start: {line!r} {client.stderr.read()[-2000:]}")
    for client in clients:  # go, together
        assert client.stdin is not None
        client.stdin.write("go\n")
        client.stdin.flush()
    return clients


def finish(clients: list[subprocess.Popen[str]]) -> list[dict[str, Any] | str]:
    out: list[dict[str, Any] | str] = []
    for client in clients:
        stdout, stderr = client.communicate(timeout=600)
        lines = stdout.strip().splitlines()
        if client.returncode != 0 or not lines:
            out.append(f"exit {client.returncode}: {stderr.strip().splitlines()[-1:]}")
        else:
            out.append(json.loads(lines[-1]))
    return out


def window_peaks(log: Path) -> str:
    """The most tokens the server accepted within any 1 s and any 60 s (its request log;
    the mock charges prompt + echoed reply, one word = one token), and the 429s after
    the first second (the first wave goes before a reply states the limit)."""
    lines = read_log(log)
    sends = [
        (line["t"], 2 * len(line["body"]["messages"][-1]["content"].split()))
        for line in lines
        if line["fault"] != "rate_limit"
    ]
    late = sum(line["fault"] == "rate_limit" and line["t"] > lines[0]["t"] + 1 for line in lines)
    times, totals = [t for t, _ in sends], [0]
    for _, tokens in sends:
        totals.append(totals[-1] + tokens)
    notes = []
    for span, limit in ((1.0, TPM_PER_S), (60.0, 60 * TPM_PER_S)):
        # The provider's window (t - span, t], ending at each accepted send.
        peak = max(
            totals[i + 1] - totals[bisect_left(times, t - span + 1e-6)] for i, t in enumerate(times)
        )
        notes.append(f"most tokens in {span:g} s: {peak:,} of {limit:,.0f}")
    return "; ".join([*notes, f"429s after the first 1 s: {late}"])


def run_processes(name: str) -> str:
    """One multi-process scenario; its results-table row."""
    spec = SCENARIOS[name]
    log_dir = Path(tempfile.mkdtemp(prefix="gauge-bench-log-"))
    log = log_dir / "requests.jsonl"
    logged = ["--request-log", str(log)] if spec.get("mixed") else []
    server, base_url = start_mock_openai_server(*spec["server"], *logged)
    redis = Redis() if spec.get("shared") else None
    try:
        redis_cpu = redis.cpu() if redis else 0.0
        clients = start_clients(name, base_url, redis.url if redis else None)
        kill = _kill_one(clients, base_url) if name == "kill" else None
        results = finish(clients)
        stats = server_stats(base_url)
        redis_cpu = redis.cpu() - redis_cpu if redis else 0.0
    finally:
        server.terminate()
        server.wait(10)
        if redis:
            redis.stop()
    peaks = window_peaks(log) if logged else None
    shutil.rmtree(log_dir, ignore_errors=True)
    return _row(name, spec, results, stats, redis_cpu, kill, peaks)


def _kill_one(clients: list[subprocess.Popen[str]], base_url: str) -> float | None:
    """kill -9 the last client KILL_AT s in; seconds until the others' accepted
    requests reach FULL_RATE of the limit over 1 s (None: never within 15 s)."""
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    killed_at: float | None = None
    while time.monotonic() - start < KILL_AT + 15:
        stats = server_stats(base_url)
        now = time.monotonic()
        samples.append((now, stats["requests"] - stats["rejected"]))
        if killed_at is None and now - start >= KILL_AT:
            clients[-1].send_signal(signal.SIGKILL)
            killed_at = now
        if killed_at is not None:
            window = [(t, n) for t, n in samples if t >= now - 1.0]
            if now - killed_at >= 1.0 and window[-1][1] - window[0][1] >= FULL_RATE * LIMIT * (
                window[-1][0] - window[0][0]
            ):
                # The first full second after the kill at full rate: its start.
                return max(0.0, now - 1.0 - killed_at)
        time.sleep(0.1)
    return None


def _row(
    name: str,
    spec: dict[str, Any],
    results: list[dict[str, Any] | str],
    stats: dict[str, int],
    redis_cpu: float,
    kill: float | None,
    peaks: str | None,
) -> str:
    done = [r for r in results if isinstance(r, dict) and not r.get("died")]
    died = len(results) - len(done)
    best = ideal(name, spec)
    if done:
        wall = max(r["finished"] for r in done) - min(r["started"] for r in done)
        walls = f"{wall:.2f} s | {wall / best:.3f}x"
    else:
        walls = "- | -"
    completed = sum(r["completed"] for r in done)
    total = spec["processes"] * spec["n"]
    notes = [f"load {os.getloadavg()[0]:.1f}"]
    if died:
        notes.insert(
            0, "; ".join(r if isinstance(r, str) else r["died"] for r in results if r not in done)
        )
    if redis_cpu:
        notes.append(f"Redis CPU {1000 * redis_cpu / max(1, stats['requests']):.3f} ms/request")
    if done:
        cpu = sum(r["cpu"] for r in done) / max(1, sum(r["completed"] for r in done))
        notes.append(f"client CPU {1000 * cpu:.3f} ms/sample")
    if peaks:
        notes.insert(0, peaks)
    if name == "kill":
        notes.insert(
            0,
            "killed 1 of 4 at 6 s; full rate again after "
            + ("never" if kill is None else f"{kill:.1f} s"),
        )
    return (
        f"| {name} | {len(done)}/{len(results)} | {walls} | {best:.2f} s | "
        f"{stats['rejected']} | {completed}/{total} | {'; '.join(notes)} |"
    )


def run_cpu() -> list[str]:
    spec = SCENARIOS["cpu"]
    server, base_url = start_mock_openai_server(*spec["server"])
    redis = Redis()
    try:
        cmd = [sys.executable, __file__, "cpu", "--child", "cpu", "--base-url", base_url]
        out = subprocess.run(
            [*cmd, "--redis", redis.url], capture_output=True, text=True, check=False
        )
    finally:
        server.terminate()
        server.wait(10)
        redis.stop()
    if out.returncode != 0:
        return [f"| cpu | failed: {out.stderr.strip().splitlines()[-3:]} |"]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    rows = []
    for budget in BUDGETS:
        runs = [f for f in figures if f["budget"] == budget]
        local = [f for f in runs if f["name"] == "in process"]
        shared = [f for f in runs if f["name"] == "shared"]
        mean = lambda xs, k: sum(x[k] for x in xs) / len(xs)  # noqa: E731
        rows.append(
            f"| cpu ({budget}) | in process "
            f"{mean(local, 'calls_s'):.0f} calls/s, {mean(local, 'cpu_ms'):.3f} ms CPU/call | "
            f"shared {mean(shared, 'calls_s'):.0f} calls/s, {mean(shared, 'cpu_ms'):.3f} ms | "
            f"{mean(shared, 'calls_s') / mean(local, 'calls_s'):.2f}x calls/s, "
            f"+{mean(shared, 'cpu_ms') - mean(local, 'cpu_ms'):.3f} ms CPU/call | runs: "
            + ", ".join(f"{f['name']} {f['calls_s']:.0f}/s {f['cpu_ms']:.3f} ms" for f in runs)
            + f" | load {os.getloadavg()[0]:.1f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=DEFAULT, help=", ".join(SCENARIOS))
    parser.add_argument("--child", choices=["eval", "cpu"])
    parser.add_argument("--base-url")
    parser.add_argument("--redis")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    if unknown := [s for s in args.scenarios if s not in SCENARIOS]:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.child:
        args.scenario = args.scenarios[0]
        (child_eval if args.child == "eval" else child_cpu)(args)
        return
    print("| scenario | processes done | wall | wall/ideal | ideal | 429s | samples | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.scenarios:
        rows = run_cpu() if name == "cpu" else [run_processes(name)]
        for row in rows:
            print(row, flush=True)


if __name__ == "__main__":
    main()
