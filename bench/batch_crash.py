"""Kill `gauge eval --batch` with SIGKILL at random moments, resume, count what was paid twice.

Issue 18's target: over 10 kill -9 trials during a batch eval, 0 requests
submitted twice and 0 samples lost.

Each trial starts the fake OpenAI batch server (gauge.testing.openai_batch_server,
its own process: it counts how many times each request's custom id was
submitted in a job), runs `gauge eval TASK --batch ...` on it, kills it at a
random moment, resumes it and kills the resume at another random moment, then
resumes to the end. The moments are drawn over the length of an uninterrupted
run measured first (from the journal's creation to the exit), so kills land
before jobs are submitted, while they are in flight, and while answers are
being journaled. The samples go in waves (--max-samples), so jobs are
submitted and finished all through the run.

    .venv/bin/python bench/batch_crash.py --trials 10

`--at-create` makes the first kill of each trial land inside the create calls
(the moment the server has made the first job), the window a random kill hits
about once in 20-35 kills.

Prints one row per trial (where each kill landed, requests submitted twice,
samples lost or journaled twice, jobs a resume found by their intent's token)
and exits 1 if any request was submitted twice or any sample was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 60) -> Task:
    return Task([Sample(input=f"q{i}", target=f"q{i}", id=f"id{i}") for i in range(n)],
                scorer=match())
"""
BATCH = '{"size": 8, "send_delay": 0.1, "tick": 0.1, "max_tick": 0.2}'


@dataclass
class Kill:
    """Where a kill landed (None: the run had already ended)."""

    samples: int | None = None
    flying: int = 0
    submitted: int = 0
    unrecorded: int = 0
    """Jobs the server created that the journal does not know: the kill landed
    inside a create call, after the server made the job, before gauge had its id."""

    def __str__(self) -> str:
        if self.samples is None:
            return "after the end"
        text = f"{self.samples} samples, {self.flying}/{self.submitted} jobs in flight"
        return text + (f", {self.unrecorded} being created" if self.unrecorded else "")


@dataclass
class Trial:
    kills: list[Kill]
    requests: int
    twice: int
    lost: int
    repeated: int
    found: int
    """Jobs a resume found at the server by the token of an intent the killed part
    wrote (the kill landed inside the create call) and re-attached to."""
    jobs: int
    seconds: float


def server(polls: int) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gauge.testing.openai_batch_server", "--polls", str(polls)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on "):
        raise SystemExit(f"the fake batch server did not start: {line!r}")
    return proc, line.removeprefix("listening on ").strip()


def gauge(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAUGE_", "OPENAI_"))}
    env["OPENAI_API_KEY"] = "sk-bench"
    return subprocess.Popen(
        [sys.executable, "-m", "gauge.cli.main", "eval", *args, "--no-display"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def lines(journal: Path) -> list[dict[str, Any]]:
    out = []
    for raw in journal.read_bytes().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue  # torn by a kill
    return out


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=10) as reply:
        out: dict[str, Any] = json.loads(reply.read())
    return out


def where(journal: Path, url: str) -> Kill:
    got = lines(journal)
    samples = sum(1 for x in got if x.get("type") == "sample")
    batches = [x for x in got if x.get("type") == "batch"]
    submitted = {x["job_id"] for x in batches if x["event"] == "submitted"}
    flying = submitted - {x["job_id"] for x in batches if x["event"] == "finished"}
    return Kill(samples, len(flying), len(submitted), stats(url)["jobs"] - len(submitted))


def found_by_token(got: list[dict[str, Any]]) -> int:
    """Submitted lines written by a later part of the run than their intent."""
    part, intents, found = 0, {}, 0
    for line in got:
        if line.get("type") == "resume":
            part += 1
        elif line.get("type") == "batch" and line.get("event") == "intent":
            intents[line["token"]] = part
        elif line.get("type") == "batch" and line.get("event") == "submitted":
            found += intents.get(line.get("token"), part) < part
    return found


def journal_in(root: Path) -> Path | None:
    logs = root / "logs"
    found = sorted(logs.glob("*.jsonl")) if logs.exists() else []
    return found[0] if found else None


def wait_journal(root: Path, proc: subprocess.Popen[bytes]) -> Path:
    while (journal := journal_in(root)) is None:
        if proc.poll() is not None:
            raise SystemExit(f"gauge eval ended early: {proc.communicate()[1].decode()}")
        time.sleep(0.005)
    return journal


def first_run(root: Path, url: str, n: int, wave: int) -> subprocess.Popen[bytes]:
    return gauge(root, "echo.py", "-T", f"n={n}", "-m", "openai/gpt-4o-mini",
                 "--model-base-url", url, "--batch", BATCH, "--max-samples", str(wave),
                 "--log-dir", "logs")  # fmt: skip


def kill_at(proc: subprocess.Popen[bytes], delay: float, journal: Path, url: str) -> Kill:
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    if proc.poll() is not None:
        proc.communicate()
        return Kill()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return where(journal, url)


def kill_at_create(proc: subprocess.Popen[bytes], journal: Path, url: str) -> Kill:
    """Kill the moment the server has created the run's first job: inside the create
    calls, before the client has read (and journaled) the new jobs' ids."""
    while proc.poll() is None and stats(url)["jobs"] == 0:
        pass
    return kill_at(proc, 0.0, journal, url)


def calibrate(n: int, wave: int, polls: int) -> float:
    """Seconds from the journal's creation to the exit of an uninterrupted run."""
    srv, url = server(polls)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "echo.py").write_text(TASK)
            proc = first_run(root, url, n, wave)
            wait_journal(root, proc)
            start = time.monotonic()
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise SystemExit(f"the calibration run failed: {err.decode()}")
            return time.monotonic() - start
    finally:
        srv.terminate()
        srv.communicate(timeout=10)


def trial(
    n: int, wave: int, polls: int, length: float, rng: random.Random, at_create: bool = False
) -> Trial:
    srv, url = server(polls)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "echo.py").write_text(TASK)
            proc = first_run(root, url, n, wave)
            journal = wait_journal(root, proc)
            if at_create:
                kills = [kill_at_create(proc, journal, url)]
            else:
                kills = [kill_at(proc, rng.uniform(0, length), journal, url)]
            again = gauge(root, "--resume", str(journal))
            kills.append(kill_at(again, rng.uniform(0, length), journal, url))
            final = gauge(root, "--resume", str(journal))
            _, err = final.communicate(timeout=300)
            if final.returncode != 0:
                raise SystemExit(f"the last resume failed: {err.decode()}")
            samples = Counter(x["id"] for x in lines(journal) if x.get("type") == "sample")
            found = found_by_token(lines(journal))
        end = stats(url)
    finally:
        srv.terminate()
        srv.communicate(timeout=10)
    counts = end["submissions"].values()
    return Trial(
        kills=kills,
        requests=len(end["submissions"]),
        twice=sum(1 for c in counts if c > 1),
        lost=sum(1 for i in range(n) if f"id{i}" not in samples),
        repeated=sum(1 for c in samples.values() if c > 1),
        found=found,
        jobs=end["jobs"],
        seconds=time.monotonic() - started,
    )


def main() -> None:
    """Run the trials and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--wave", type=int, default=20, help="--max-samples of the eval")
    parser.add_argument("--polls", type=int, default=8, help="polls before a job completes")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--at-create",
        action="store_true",
        help="the first kill of each trial lands as the server creates the first job",
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    length = calibrate(args.samples, args.wave, args.polls)
    print(f"seed {seed}; an uninterrupted run takes {length:.2f} s after its journal appears")
    print(f"{args.samples} samples (one request each), jobs of <= 8, {args.wave} samples at once")
    print()
    print("| trial | first kill at | second kill (resume) at | requests | submitted twice "
          "| samples lost | journaled twice | found by token | jobs | s |")  # fmt: skip
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for number in range(1, args.trials + 1):
        t = trial(args.samples, args.wave, args.polls, length, rng, args.at_create)
        results.append(t)
        print(f"| {number} | {t.kills[0]} | {t.kills[1]} | {t.requests} | {t.twice} | {t.lost} "
              f"| {t.repeated} | {t.found} | {t.jobs} | {t.seconds:.1f} |", flush=True)  # fmt: skip
    twice = sum(t.twice for t in results)
    lost = sum(t.lost for t in results)
    repeated = sum(t.repeated for t in results)
    kills = [k for t in results for k in t.kills]
    landed = sum(1 for k in kills if k.samples is not None)
    flying = sum(1 for k in kills if k.flying)
    inside = sum(1 for k in kills if k.unrecorded)
    print()
    print(
        f"kills: {landed} of {len(kills)} landed before the end, {flying} with jobs in "
        f"flight, {inside} inside a job create; requests submitted twice: {twice}; "
        f"samples lost: {lost}; samples journaled twice: {repeated}; jobs found by "
        f"token on resume: {sum(t.found for t in results)}"
    )
    sys.exit(1 if twice or lost or repeated else 0)


if __name__ == "__main__":
    main()
