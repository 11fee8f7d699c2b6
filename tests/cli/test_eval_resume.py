"""Kill `gauge eval` with SIGKILL at random points, resume, and check every sample ran once."""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

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


# -- settings on resume: restored to the layer they came from, one resolved value --

ECHO = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 8) -> Task:
    return Task([Sample(input=f"w{i}", target=f"w{i}", id=i) for i in range(n)], scorer=match())
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from gauge.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as ex:
        code = int(ex.code or 0)
    _, err = capsys.readouterr()
    return code, err


def records(journal: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in journal.read_bytes().splitlines()]


def started(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str
) -> tuple[Path, dict[str, Any]]:
    """A journal of 2 of the task's 8 samples, run with `args`; and its header."""
    (tmp_path / "echo.py").write_text(ECHO)
    logs = tmp_path / "logs"
    code, err = cli(capsys, "eval", str(tmp_path / "echo.py"), "-m", "mock/r", "--limit", "2",
                    "--log-dir", str(logs), "--no-display", *args)  # fmt: skip
    assert code == 0, err
    [journal] = logs.glob("*.jsonl")
    return journal, records(journal)[0]


def resumed(capsys: pytest.CaptureFixture[str], journal: Path, *args: str) -> dict[str, Any]:
    """Resume `journal` for the whole task; the "resume" line it wrote."""
    code, err = cli(capsys, "eval", "--resume", str(journal), "--limit", "8", "--no-display", *args)
    assert code == 0, err
    lines = records(journal)
    assert lines[-1]["type"] == "summary" and lines[-1]["completed"] == 8
    return [x for x in lines if x["type"] == "resume"][-1]


@pytest.mark.parametrize(
    ("first", "again", "connections"),
    [
        ([], [], None),
        (["--max-connections", "3"], [], 3),  # restored
        (["--max-connections", "3"], ["--max-connections", "5"], 5),  # given again: it wins
        (["--max-connections", "3"], ["-M", "num_concurrent=4"], 4),  # under any name
        (["-M", "num_concurrent=2"], [], 2),
        (["-M", "num_concurrent=2"], ["--max-connections", "6"], 6),  # no clash: replaced
        (["-M", "num_concurrent=2"], ["-M", "num_concurrent=5"], 5),
        (["-M", "max_connections=5", "--max-connections", "3"], [], 3),
    ],
)
def test_resume_restores_the_resolved_settings(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    first: list[str],
    again: list[str],
    connections: int | None,
) -> None:
    journal, header = started(capsys, tmp_path, *first, "--max-retries", "2")
    assert header["pipeline"]["max_retries"] == 2
    line = resumed(capsys, journal, *again)
    assert line["pipeline"]["max_connections"] == connections
    assert line["pipeline"]["max_retries"] == 2  # restored with the rest
    assert line["eval"]["samples_in_flight"] == (connections or 256)
    # A second resume continues with what the first one used.
    code, err = cli(capsys, "eval", "--resume", str(journal), "--limit", "8", "--no-display")
    assert code == 0, err
    last = [x for x in records(journal) if x["type"] == "resume"][-1]
    assert last["pipeline"] == line["pipeline"]


def test_resume_restores_settings_given_in_python(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Before, eval(max_connections=4) reached neither the header's config nor a resume,
    # and a Model's own config was lost: the resumed run was adaptive.
    from gauge import GenerateConfig, eval, get_model

    (tmp_path / "echo.py").write_text(ECHO)
    spec = f"{tmp_path / 'echo.py'}@echo"
    [result] = eval(spec, "mock/py", log_dir=tmp_path, display=False, limit=2, max_connections=4)
    header = records(Path(result.journal))[0]
    assert header["pipeline"]["max_connections"] == 4
    assert resumed(capsys, Path(result.journal))["pipeline"]["max_connections"] == 4
    model = get_model("mock/own", config=GenerateConfig(max_connections=6, timeout=9))
    [result] = eval(spec, model, log_dir=tmp_path / "own", display=False, limit=2)
    line = resumed(capsys, Path(result.journal))
    assert (line["pipeline"]["max_connections"], line["pipeline"]["timeout"]) == (6, 9)
    assert line["config_layers"]["model"] == {"max_connections": 6, "timeout": 9}


def test_resume_of_a_journal_without_config_layers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    journal, _ = started(capsys, tmp_path)
    lines = journal.read_bytes().splitlines()
    header = orjson.loads(lines[0])
    for key in ("config_layers", "pipeline", "resolved_config"):
        del header[key]
    header["eval"]["max_connections"] = 3  # what the CLI used to record
    journal.write_bytes(b"\n".join([orjson.dumps(header), *lines[1:]]) + b"\n")
    assert resumed(capsys, journal)["pipeline"]["max_connections"] == 3
