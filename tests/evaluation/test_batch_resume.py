"""`gauge eval --batch` killed (SIGKILL, Ctrl-C) while jobs are in flight, then resumed.

The fake OpenAI batch server runs as a subprocess and counts how many times each
request (custom id) was submitted in a job: across kills and resumes it must be
exactly once, and every sample must be in the journal exactly once.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 24) -> Task:
    return Task([Sample(input=f"q{i}", target=f"q{i}", id=f"id{i}") for i in range(n)],
                scorer=match())
"""
N = 24
BATCH = '{"size": 8, "send_delay": 0.1, "tick": 0.1, "max_tick": 0.1}'


@pytest.fixture
def server() -> Iterator[str]:
    """The fake batch server in its own process (a job completes after 20 polls)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gauge.testing.openai_batch_server", "--polls", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("listening on "), line
    try:
        yield line.removeprefix("listening on ").strip()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return orjson.loads(response.read())


def default_sigint() -> None:
    # A shell that starts the test run in the background (`cmd &`) ignores SIGINT, and
    # children inherit that: Ctrl-C could then never reach the eval under test.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def gauge(cwd: Path, *args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAUGE_", "OPENAI_"))}
    env["OPENAI_API_KEY"] = "sk-test"
    return subprocess.Popen(
        [sys.executable, "-m", "gauge.cli.main", "eval", *args, "--no-display"],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )


def start(tmp_path: Path, url: str, **popen: Any) -> subprocess.Popen[bytes]:
    (tmp_path / "echo.py").write_text(TASK)
    return gauge(tmp_path, "echo.py", "-m", "openai/gpt-4o-mini", "--model-base-url", url,
                 "--batch", BATCH, "--log-dir", "logs", **popen)  # fmt: skip


def records(journal: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for raw in journal.read_bytes().splitlines():
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # torn by the kill
        if line.get("type") == kind:
            out.append(line)
    return out


def in_flight(journal: Path) -> set[str]:
    lines = records(journal, "batch")
    submitted = {x["job_id"] for x in lines if x["event"] == "submitted"}
    return submitted - {x["job_id"] for x in lines if x["event"] == "finished"}


def wait_for(what: Any, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def journal_of(tmp_path: Path) -> Path | None:
    found = list((tmp_path / "logs").glob("*.jsonl")) if (tmp_path / "logs").exists() else []
    return found[0] if found else None


def test_kill_9_while_jobs_are_in_flight_then_resume_submits_each_request_once(
    tmp_path: Path, server: str
) -> None:
    proc = start(tmp_path, server)
    wait_for(lambda: journal_of(tmp_path) is not None, proc)
    journal = journal_of(tmp_path)
    assert journal is not None
    wait_for(lambda: len(in_flight(journal)) == 3, proc)  # all 24 requests in 3 jobs
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert records(journal, "sample") == [] and len(in_flight(journal)) == 3
    # The first resume re-attaches; kill it too, once it has started waiting.
    again = gauge(tmp_path, "--resume", str(journal))
    wait_for(lambda: len(records(journal, "resume")) == 1, again)
    time.sleep(0.3)
    again.send_signal(signal.SIGKILL)
    again.communicate()
    final = gauge(tmp_path, "--resume", str(journal))
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    stats = get(server.removesuffix("/v1") + "/stats")
    assert len(stats["submissions"]) == N  # every request was submitted...
    assert set(stats["submissions"].values()) == {1} and stats["duplicates"] == 0  # ...once
    assert stats["jobs"] == 3 and stats["realtime"] == 0
    samples = Counter(line["id"] for line in records(journal, "sample"))
    assert samples == Counter({f"id{i}": 1 for i in range(N)})  # each sample once
    assert all(x["scores"]["match"]["value"] == "C" for x in records(journal, "sample"))
    assert in_flight(journal) == set()
    assert f"{N}/{N}".encode() in out


def test_ctrl_c_without_a_terminal_leaves_the_jobs_running(tmp_path: Path, server: str) -> None:
    proc = start(tmp_path, server)
    wait_for(lambda: (j := journal_of(tmp_path)) is not None and len(in_flight(j)) == 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    journal = journal_of(tmp_path)
    assert journal is not None
    text = err.decode()
    assert f"left 3 batch jobs ({N} requests) running; gauge eval --resume logs/" in text
    assert "re-attaches to them" in text
    for job in ("batch_1", "batch_2", "batch_3"):
        assert get(f"{server}/batches/{job}")["status"] == "in_progress"


def test_ctrl_c_answered_cancel_cancels_the_jobs(tmp_path: Path, server: str) -> None:
    terminal, stdin = pty.openpty()
    try:
        proc = start(tmp_path, server, stdin=stdin)
        wait_for(lambda: (j := journal_of(tmp_path)) is not None and len(in_flight(j)) == 3, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        asked = b""
        while b"[L]eave/[c]ancel" not in asked:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, asked.decode()
            asked += chunk
        os.write(terminal, b"c\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(stdin)
    question = asked.decode()
    assert f"leave 3 batch jobs ({N} requests) running (resume later with gauge eval " in question
    assert proc.returncode == 130
    for job in ("batch_1", "batch_2", "batch_3"):
        assert f"batch {job}: cancel requested" in err.decode()
        assert get(f"{server}/batches/{job}")["status"] == "cancelled"
    # A resume re-attaches, finds them cancelled and unanswered, and sends their
    # requests in new jobs.
    journal = journal_of(tmp_path)
    assert journal is not None
    final = gauge(tmp_path, "--resume", str(journal))
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    samples = Counter(line["id"] for line in records(journal, "sample"))
    assert samples == Counter({f"id{i}": 1 for i in range(N)})
    assert get(server.removesuffix("/v1") + "/stats")["jobs"] == 6
