"""The kill-and-resume trial (scripts/kill_resume.py), short: 3 SIGKILLs over 150 samples.

The script runs the mock server as its own process with a request log and
checks the journal (each sample exactly once, all scored) and the log (no
launch asked again for a sample the journal already held). Kill points follow
journal progress or the clock; either way the checks must hold, so a loaded
machine moves the kills but cannot make the test fail. tests/cli/test_eval_resume.py
covers the same promise with the mock provider in process and 2 epochs.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_resume.py"


def run_trial(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return proc.returncode, json.loads(line.removeprefix("RESULT ")), proc.stdout + proc.stderr


def test_three_kills_lose_nothing_and_repeat_no_finished_sample(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1 << 30)  # printed by the script on failure
    code, figures, output = run_trial(
        "--kills", "3", "--samples", "150", "--seed", str(seed), "--workdir", str(tmp_path)
    )
    assert code == 0, output
    assert figures["failures"] == [], output
    assert figures["kills"] == 3, output
    assert figures["journal_sample_lines"] == 150
    assert figures["repeated_requests_finished"] == 0
    # Each launch after the first resumed the same journal.
    assert figures["launches"] == 4 and figures["fresh_starts"] >= 1
    log = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines() if x]
    runs = {entry["headers"]["x-gauge-run"] for entry in log}
    assert runs <= {"1", "2", "3", "4"} and "4" in runs  # the last launch did real work
    assert len(log) == figures["requests"] >= 150


def test_the_checks_catch_a_sample_run_twice(tmp_path: Path) -> None:
    # The checker must be able to fail: journal one sample twice and ask for it
    # again from a later launch, then check that both problems are reported.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import kill_resume
    finally:
        sys.path.remove(str(SCRIPT.parent))
    args = kill_resume.parse_args(["--samples", "2", "--kills", "1", "--seed", "1"])
    trial = kill_resume.Trial(args, tmp_path, "http://127.0.0.1:1/v1")
    journal = tmp_path / "j.jsonl"
    sample = {"type": "sample", "error": None, "scores": {"match": {"value": "C"}}}
    lines = [
        {"type": "header"},
        {**sample, "id": "id0"},
        {**sample, "id": "id1"},
        {**sample, "id": "id1"},
        {"type": "summary", "completed": 2},
    ]
    journal.write_text("".join(json.dumps(x) + "\n" for x in lines))
    trial.journal = journal
    trial.finished_before = {1: set(), 2: {"id0"}}
    log = tmp_path / "requests.jsonl"
    asks = [("1", "q0"), ("1", "q1"), ("2", "q0")]
    log.write_text(
        "".join(
            json.dumps({"headers": {"x-gauge-run": run}, "body": {"messages": [{"content": q}]}})
            + "\n"
            for run, q in asks
        )
    )
    figures = kill_resume.check(trial, log, samples=2)
    failures = " | ".join(figures["failures"])
    assert "1 sample(s) journalled more than once" in failures
    assert "1 request(s) for samples already finished: [(2, 'id0')]" in failures
    assert figures["repeated_requests_finished"] == 1
