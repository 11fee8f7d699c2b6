"""Kill `gauge eval` with SIGKILL at random points, resume, and check every sample ran once."""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def slow(n: int = 120) -> Task:
    return Task([Sample(input=f"q{i}", target=f"q{i}", id=f"id{i}") for i in range(n)],
                scorer=match(), epochs=2)
"""


def gauge(*args: str, cwd: Path, capture: bool = False) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    pipe = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "gauge.cli.main", *args], cwd=cwd, env=env, stdout=pipe, stderr=pipe
    )


def sample_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line torn by the kill
        if record.get("type") == "sample":
            out.append(record)
    return out


def wait_for_samples(journal: Path, proc: subprocess.Popen[bytes], at_least: int) -> None:
    """Block until the journal holds `at_least` sample lines or `proc` has ended."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(sample_lines(journal)) >= at_least:
            return
        time.sleep(0.01)


def test_kill_and_resume_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(TASK)
    seed = random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)  # kill points differ per run; the seed is in every failure
    total = 600  # 300 samples x 2 epochs at 8 concurrent x 20 ms: ~1.5 s of work per run
    args = [
        "eval",
        "slow.py",
        "-T",
        "n=300",
        "-m",
        "mock/slow",
        "-M",
        "latency=0.02",
        "--max-connections",
        "8",
        "--log-dir",
        "logs",
        "--no-display",
    ]
    # Kill points follow the journal's progress, not the clock, so a slow or
    # loaded machine moves them in time but not in position.
    proc = gauge(*args, cwd=tmp_path)
    journal = None
    while journal is None and proc.poll() is None:
        found = list((tmp_path / "logs").glob("*.jsonl")) if (tmp_path / "logs").exists() else []
        journal = found[0] if found else None
        time.sleep(0.01)
    assert journal is not None, seed
    kills, seen_after_kill = 0, []
    for _ in range(4):  # kill, resume, kill again: each time a little further on
        target = len(sample_lines(journal)) + rng.randint(20, 90)
        wait_for_samples(journal, proc, target)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere between two flushes
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        seen_after_kill.append(len(sample_lines(journal)))
        proc = gauge("eval", "--resume", str(journal), "--no-display", cwd=tmp_path)
    proc.kill()
    proc.wait()
    final = gauge("eval", "--resume", str(journal), "--no-display", cwd=tmp_path, capture=True)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, (seed, err.decode())
    records = sample_lines(journal)
    pairs = Counter((r["id"], r["epoch"]) for r in records)
    expected = {(f"id{i}", e) for i in range(300) for e in (1, 2)}
    assert set(pairs) == expected, seed  # none lost
    assert max(pairs.values()) == 1, seed  # none run twice
    assert kills >= 3 and 0 < seen_after_kill[0] < total, (seed, kills, seen_after_kill)
    assert all(r["scores"]["match"]["value"] == "C" for r in records)
    summary = orjson.loads(journal.read_bytes().splitlines()[-1])
    assert summary["type"] == "summary" and summary["completed"] == total
    assert f"{total}/{total}".encode() in out
