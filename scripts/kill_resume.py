"""Kill `gauge eval` with SIGKILL at random points, resume each time; nothing lost or redone.

    .venv/bin/python scripts/kill_resume.py [--kills 20] [--samples 2000] [--seed N]

The mock OpenAI server runs as its own process with a request log (one JSON line
per request, with its headers and body). Each `gauge eval` launch sends an
`X-Gauge-Run: <launch number>` header (--extra-headers), so the log says which
launch asked for which sample. Kill points are seeded: about half follow the
journal's progress (a number of new sample lines, then a random 0-50 ms, so
some land mid-flush) and half follow the clock (0.1-1.5 s after launch, so some
land during start-up or the journal header; capped by progress, so a fast
machine cannot finish the run before the last kill). After the last kill the run is
resumed to the end. Checks:

  * every sample id appears exactly once in the journal, scored correct;
  * no launch asked the server for a sample that the journal already held when
    the previous launch was killed (samples in flight may be asked again);
  * the last launch exits 0 and its summary counts every sample.

Prints the figures and a last line `RESULT {json}`; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def kr(n: int = 100) -> Task:
    return Task([Sample(input=f"q{i}", target=f"q{i}", id=f"id{i}") for i in range(n)],
                scorer=match(location="exact"))
"""


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines of `path`; a line torn by a kill is skipped."""
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def finished_ids(journal: Path | None) -> set[str]:
    """Sample ids the journal holds as finished without error."""
    if journal is None or not journal.exists():
        return set()
    return {
        str(r["id"]) for r in read_lines(journal) if r.get("type") == "sample" and not r["error"]
    }


def start_server(workdir: Path, latency: float) -> tuple[subprocess.Popen[str], str, Path]:
    log = workdir / "requests.jsonl"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gauge.testing.openai_server",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--request-log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"mock server did not start: {line!r}")
    return server, line.removeprefix("listening on "), log


class Trial:
    """One run of `gauge eval`, killed and resumed `kills` times."""

    def __init__(self, args: argparse.Namespace, workdir: Path, url: str) -> None:
        self.args = args
        self.workdir = workdir
        self.url = url
        self.rng = random.Random(args.seed)
        self.journal: Path | None = None
        self.launch = 0
        self.kills: Counter[str] = Counter()
        self.finished_before: dict[int, set[str]] = {}
        """Launch number -> samples the journal held when that launch started."""
        self.fresh_starts = 0
        self.empty_journals = 0
        """Journals left empty by a kill during start-up (deleted, then started afresh)."""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
        self.env["OPENAI_API_KEY"] = "sk-kill-resume"

    def start(self) -> subprocess.Popen[bytes]:
        """Launch `gauge eval` (fresh, or resuming the journal)."""
        self.launch += 1
        self.finished_before[self.launch] = finished_ids(self.journal)
        common = [
            "--model-base-url",
            self.url,
            "--extra-headers",
            json.dumps({"X-Gauge-Run": str(self.launch)}),
            "--no-display",
        ]
        if self.journal is None:
            target = [
                "kr.py",
                "-T",
                f"n={self.args.samples}",
                "-m",
                "openai/mock-model",
                "--max-connections",
                str(self.args.max_connections),
                "--log-dir",
                "logs",
            ]
            self.fresh_starts += 1
        else:
            target = ["--resume", str(self.journal)]
        return subprocess.Popen(
            [sys.executable, "-m", "gauge.cli.main", "eval", *target, *common],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL if self.args.quiet else None,
            stderr=subprocess.PIPE,
        )

    def find_journal(self, dead: bool) -> None:
        """Note the journal once it has its header (`dead`: the launch has ended)."""
        if self.journal is not None:
            return
        found = sorted((self.workdir / "logs").glob("*.jsonl"))
        if len(found) > 1:
            raise SystemExit(f"more than one journal: {found}")
        if found and found[0].stat().st_size > 0:
            self.journal = found[0]
        elif found and dead:
            # Killed between creating the journal and writing its header: nothing to resume.
            found[0].unlink()
            self.empty_journals += 1

    def kill_once(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for this kill's point, then SIGKILL (unless the run ended first).

        Each kill lets at most `samples / (kills + 5)` samples finish, so the
        kills spread over the whole run however fast the machine is.
        """
        mode = self.rng.choice(["progress", "time"])
        step = max(1, self.args.samples // (self.args.kills + 5))
        start = len(finished_ids(self.journal))
        if mode == "progress":
            goal, until = start + self.rng.randint(max(1, step // 2), step), None
        else:
            goal, until = start + step, time.monotonic() + self.rng.uniform(0.1, 1.5)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if until is not None and time.monotonic() >= until:
                break
            self.find_journal(dead=False)
            if len(finished_ids(self.journal)) >= goal:
                if until is not None:
                    mode = "time, capped by progress"
                break
            time.sleep(0.005)
        if until is None:
            time.sleep(self.rng.uniform(0, 0.05))  # anywhere between two journal flushes
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.kills[mode] += 1
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        self.find_journal(dead=True)

    def run(self) -> int:
        """Kill and resume; return the last launch's exit code."""
        proc = self.start()
        while sum(self.kills.values()) < self.args.kills:
            self.kill_once(proc)
            if proc.returncode == 0 and sum(self.kills.values()) < self.args.kills:
                print(f"the run finished after {sum(self.kills.values())} kills", flush=True)
                return 0
            proc = self.start()
        _, err = proc.communicate(timeout=600)
        self.find_journal(dead=True)
        if proc.returncode != 0:
            print(err.decode(errors="replace"), file=sys.stderr)
        return proc.returncode


def check(trial: Trial, log: Path, samples: int) -> dict[str, Any]:
    """The figures, and the list of failed checks under "failures"."""
    failures: list[str] = []
    journal = trial.journal
    lines = read_lines(journal) if journal else []
    records = [r for r in lines if r.get("type") == "sample"]
    per_id = Counter(str(r["id"]) for r in records)
    expected = {f"id{i}" for i in range(samples)}
    if set(per_id) != expected:
        failures.append(f"{len(expected - set(per_id))} sample(s) missing from the journal")
    if twice := sorted(i for i, n in per_id.items() if n > 1):
        failures.append(f"{len(twice)} sample(s) journalled more than once: {twice[:5]}")
    wrong = [r["id"] for r in records if r["error"] or r["scores"]["match"]["value"] != "C"]
    if wrong:
        failures.append(f"{len(wrong)} sample line(s) with an error or a wrong score")
    summaries = [r for r in lines if r.get("type") == "summary"]
    if not summaries or summaries[-1]["completed"] != samples:
        failures.append("the last summary does not count every sample as completed")
    asked: Counter[str] = Counter()
    repeats_finished: list[tuple[int, str]] = []
    for request in read_lines(log):
        run = int(request["headers"].get("x-gauge-run", 0))
        sample = "id" + str(request["body"]["messages"][-1]["content"]).removeprefix("q")
        asked[sample] += 1
        if sample in trial.finished_before.get(run, set()):
            repeats_finished.append((run, sample))
    if repeats_finished:
        failures.append(
            f"{len(repeats_finished)} request(s) for samples already finished: "
            f"{repeats_finished[:5]}"
        )
    return {
        "kills": sum(trial.kills.values()),
        "kills_by_progress": trial.kills["progress"],
        "kills_by_time": trial.kills["time"],
        "kills_by_time_capped": trial.kills["time, capped by progress"],
        "launches": trial.launch,
        "fresh_starts": trial.fresh_starts,
        "empty_journals": trial.empty_journals,
        "samples": samples,
        "journal_sample_lines": len(records),
        "requests": sum(asked.values()),
        "samples_asked_more_than_once": sum(1 for n in asked.values() if n > 1),
        "repeated_requests_unfinished": sum(n - 1 for n in asked.values() if n > 1),
        "repeated_requests_finished": len(repeats_finished),
        "failures": failures,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--latency", type=float, default=0.05, help="mock server seconds/request")
    parser.add_argument("--max-connections", type=int, default=4)
    parser.add_argument("--workdir", default=None, help="keep the files here (default: a temp dir)")
    parser.add_argument("--quiet", action="store_true", help="hide gauge's own output")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    if args.kills < 1 or args.samples < 1:
        parser.error("--kills and --samples must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gauge-kill-resume-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "kr.py").write_text(TASK)
    server, url, log = start_server(workdir, args.latency)
    started = time.monotonic()
    try:
        trial = Trial(args, workdir, url)
        code = trial.run()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if server.stdout is not None:
            server.stdout.close()
    wall = time.monotonic() - started
    figures = check(trial, log, args.samples)
    figures.update({"seed": args.seed, "exit_code": code, "wall_s": round(wall, 1)})
    if code != 0:
        figures["failures"].append(f"the last launch exited {code}")
    print(
        f"seed {args.seed}: {figures['kills']} SIGKILLs ({figures['kills_by_progress']} by "
        f"journal progress, {figures['kills_by_time']} by time, "
        f"{figures['kills_by_time_capped']} by time capped by progress), "
        f"{figures['launches']} launches, "
        f"{args.samples} samples, {figures['journal_sample_lines']} sample lines in the journal, "
        f"{figures['requests']} requests; re-asked: {figures['repeated_requests_unfinished']} "
        f"for unfinished samples, {figures['repeated_requests_finished']} for finished ones; "
        f"{wall:.1f} s"
    )
    for failure in figures["failures"]:
        print(f"FAILED: {failure}")
    print("RESULT " + json.dumps(figures), flush=True)
    if not args.workdir and not figures["failures"]:
        shutil.rmtree(workdir, ignore_errors=True)
    elif figures["failures"]:
        print(f"files kept in {workdir}")
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
