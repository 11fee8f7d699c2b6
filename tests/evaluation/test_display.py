"""The live display of `gauge eval` fits the terminal, reads well, and degrades to
plain lines without one (CI logs, pipes); Ctrl-C says how to resume."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import Task, eval_async, get_model
from gauge.dataset import Sample
from gauge.evaluation import progress
from gauge.evaluation.progress import Counters, ProgressDisplay, key_label
from gauge.scorer import match

KEY = "openai-api|http://10.1.2.3:8000/v1|3f9a1c0d2b7e|meta-llama/Llama-3.1-8B-Instruct"
LONG = "openai-api/meta-llama/Llama-3.1-8B-Instruct"

# Cursor moves and line erasures (a live frame's redraw) end a line; colours vanish.
_MOVES = re.compile(r"\x1b\[[0-9;?]*[ABCDGHJKlh]|\r")
_STYLES = re.compile(r"\x1b\[[0-9;]*m")


def samples(n: int) -> list[Sample]:
    return [Sample(input=f"w{i}", target=f"w{i}", id=f"s{i}") for i in range(n)]


def stats(key: str = KEY, slowed: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "concurrency": 32,
        "adaptive": True,
        "in_flight": 17,
        "requests": 400,
        "rate_limit_hits": 3,
        "tokens_per_minute": 123456.0,
        "slowed": slowed,
        **extra,
    }


class FakeModel:
    def __init__(self, name: str, key_stats: dict[str, Any]) -> None:
        self.name = name
        self._stats = key_stats

    def rate_stats(self) -> dict[str, Any]:
        return self._stats


def counters(total: int, done: int, **values: Any) -> Counters:
    c = Counters(total=total, done=done, **values)
    c.started -= 12.0  # 12 s in: a rate and an ETA to show
    return c


def frames(console: Any) -> list[str]:
    """The lines a terminal console received, one per line of each frame."""
    raw = console.file.getvalue()
    return [line for line in _STYLES.sub("", _MOVES.sub("\n", raw)).split("\n") if line.strip()]


def display_with_runs(console: Any) -> ProgressDisplay:
    display = ProgressDisplay(console)
    slowed = "concurrency halved 64 -> 32 after a 429 with Retry-After: paused 1.0s"
    display.add(
        LONG,
        counters(1000, 420, rate_limits=3, tokens=8400),
        FakeModel(LONG, stats(slowed=slowed)),
        "arith",
    )
    display.add(
        "mock/visible",
        counters(1000, 1000, tokens=2000),
        FakeModel("mock/visible", stats("mock||-|visible", in_flight=0)),
        "arith",
    )
    display.add("hf/gauge-tiny", counters(1000, 0, loading=True), None, "arith")
    return display


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_every_line_fits_the_width_with_readable_labels(width: int) -> None:
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=True, file=io.StringIO())
    display = display_with_runs(console)
    console.print(display._render())
    lines = console.export_text().splitlines()
    text = "\n".join(lines)
    assert lines and all(len(line) <= width for line in lines), text
    # People's labels: the model (never the key string or the credential fingerprint).
    assert (
        LONG in text and "mock/visible" in text and "|" not in text and "3f9a1c0d2b7e" not in text
    )
    [loading] = [line for line in lines if "gauge-tiny" in line]
    assert loading.startswith("loading ") and "hf/gauge-tiny... 0:1" in loading
    assert "/1000" not in loading  # not a frozen 0/1000
    assert "420/1000" in text and "ETA " in text and "errors 0" in text
    # Rate control of the running key is shown (folded in, or on a short second line).
    assert "in flight 17 of 32" in text and "rate-limited 3" in text and "tokens/min" in text
    assert "slowed: concurrency halved" in text
    if width >= 80:  # a run: its line, a rate-control line, the reason it slowed (2 lines)
        assert len(lines) <= 4 + 1 + 1 and "…" not in text
    if width >= progress.WIDE:
        assert "arith " + LONG in text and "tokens 8,400" in text  # more detail when wide
    if 80 <= width <= 120:  # the host, where there is room for it
        assert "10.1.2.3:8000" in text


def test_at_80_columns_each_run_is_one_line_plus_a_short_one() -> None:
    from rich.console import Console

    console = Console(width=80, record=True, force_terminal=True, file=io.StringIO())
    display = ProgressDisplay(console)
    for name in ("mock/a", "mock/b"):
        display.add(name, counters(1000, 420), FakeModel(name, stats(f"mock||-|{name[5:]}")), "t")
    console.print(display._render())
    lines = console.export_text().splitlines()
    assert len(lines) == 4 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("mock/a ") and lines[2].startswith("mock/b ")
    assert lines[1].startswith("  in flight 17 of 32 · rate-limited 0 · 123k tokens/min")


def test_a_helper_models_key_gets_a_readable_line_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gauge.model.rate

    grader = "openai|https://api.openai.com/v1|abcdef123456|gpt-4o-mini"
    live = [stats("mock||-|old", requests=9)]  # busy before this eval: not shown
    monkeypatch.setattr(gauge.model.rate, "key_stats", lambda: live)
    display = ProgressDisplay()
    display.add("mock/a", counters(100, 40), FakeModel("mock/a", stats("mock||-|a")), "t")
    live[:] = [stats("mock||-|old", requests=9), stats("mock||-|a"), stats(grader, requests=5)]
    text = "\n".join(line.plain() for line in display.lines(80))
    assert "  openai/gpt-4o-mini · in flight 17 of 32 · rate-limited 3" in text, text
    assert "abcdef123456" not in text and "mock/old" not in text
    assert text.count("in flight") == 2  # the run's own key is on the run's line only


def test_past_the_terminal_height_finished_runs_shrink_to_one_line() -> None:
    from rich.console import Console

    console = Console(width=80, height=24, force_terminal=True, file=io.StringIO())
    display = ProgressDisplay(console)
    for i in range(24):
        done = 100 if i < 20 else 40
        name = f"mock/m{i}"
        display.add(name, counters(100, done), FakeModel(name, stats(f"mock||-|m{i}")), "t")
    lines = [line.plain() for line in display.lines(80, height=24)]
    assert len(lines) <= 24 and lines[0] == "20 runs finished"
    assert all(any(line.startswith(f"mock/m{i} ") for line in lines) for i in range(20, 24))


def test_key_labels_never_show_the_fingerprint() -> None:
    assert key_label(KEY) == (LONG, "10.1.2.3:8000")
    assert key_label("mock||-|visible") == ("mock/visible", None)
    assert key_label("hf|/models/gauge-tiny|cpu|float32") == ("hf/gauge-tiny", None)
    assert key_label("google|vertex|proj|us-east1|gemini-2.0") == ("google/gemini-2.0", None)
    assert key_label("openai|https://u@api.example.com/v1|abc|gpt")[1] == "api.example.com"


async def test_a_live_eval_at_80_columns_fits_and_clears_its_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    console = Console(width=80, force_terminal=True, file=io.StringIO())
    models = [
        get_model("mock/visible", memoize=False, latency=0.05),
        get_model("mock/another-model-with-a-long-name", memoize=False, latency=0.05),
    ]
    await eval_async(
        Task(samples(60), scorer=match()),
        models,
        log_dir=tmp_path,
        console=console,
        max_connections=4,  # fixed: about 0.75 s, several frames
    )
    lines = frames(console)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    assert "mock/visible" in text and "mock/another-model-with-a-long-name" in text
    assert "|" not in text and "in flight" in text and "rate-limited 0" in text
    # Transient: the last frame is erased (cursor up + erase line), nothing is left behind.
    assert console.file.getvalue().endswith("\x1b[2K")


async def test_without_a_terminal_plain_progress_lines_and_no_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from gauge.model.providers.mock import MockAPI

    async def load(self: MockAPI) -> None:  # a local model taking a while to load
        import asyncio

        await asyncio.sleep(0.3)

    monkeypatch.setattr(MockAPI, "load", load, raising=False)
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    console = Console(width=80, file=io.StringIO())  # not a terminal
    model = get_model("mock/ci", memoize=False, latency=0.05, max_connections=4)
    await eval_async(Task(samples(40), scorer=match()), model, log_dir=tmp_path, console=console)
    out = console.file.getvalue()
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == "[mock/ci] loading the model..."
    progress_lines = lines[1:]
    pattern = (
        r"\[mock/ci\] \d+/40 samples, [\d.,]+/s, (ETA [\d:-]+|done in [\d:]+), "
        r"errors 0, rate-limited 0"
    )
    assert progress_lines and all(re.match(pattern, line) for line in progress_lines), out
    assert lines[-1].startswith("[mock/ci] 40/40 samples,") and "done in" in lines[-1]
    # Each tenth at most once (plus the first line): not a line per redraw.
    assert len(progress_lines) <= 12


def test_plain_lines_come_every_interval_or_tenth() -> None:
    from rich.console import Console

    console = Console(width=80, file=io.StringIO())
    display = ProgressDisplay(console)
    c = counters(1000, 0)
    display.add("mock/x", c, None, "t")
    display._start()
    display._print_plain(100.0)  # the first line
    c.done = 50
    display._print_plain(101.0)  # same tenth, interval not over: nothing
    c.done = 120
    display._print_plain(102.0)  # a new tenth
    c.done = 130
    display._print_plain(111.0)  # the interval is over
    display.close()
    lines = console.file.getvalue().splitlines()
    assert [line.split(" samples")[0] for line in lines] == [
        "[mock/x] 0/1000",
        "[mock/x] 120/1000",
        "[mock/x] 130/1000",
        "[mock/x] 130/1000",
    ]


# -- the real command -------------------------------------------------------------------------

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 40) -> Task:
    return Task([Sample(input=f"w{i}", target=f"w{i}", id=i) for i in range(n)], scorer=match())
"""


def gauge_command(tmp_path: Path, *args: str) -> list[str]:
    (tmp_path / "echo_task.py").write_text(TASK)
    return [
        sys.executable,
        "-m",
        "gauge.cli.main",
        "eval",
        str(tmp_path / "echo_task.py"),
        "--log-dir",
        str(tmp_path / "logs"),
        *args,
    ]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return {**env, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


def test_in_tmux_at_80x24_nothing_wraps_and_labels_read(tmp_path: Path) -> None:
    tmux = shutil.which("tmux")
    if tmux is None:
        # The test command installs it (README, .ci/run): never skipped silently.
        pytest.fail("tmux is not installed: apt-get install -y tmux (a real 80x24 terminal)")
    done = tmp_path / "done"
    command = gauge_command(
        tmp_path,
        "-T",
        "n=150",
        "-m",
        "mock/slow-model,mock/another-model-with-a-long-name",
        "-M",
        "latency=0.05",
        "-M",
        "error_rate=0.05",
        "-M",
        "error=rate_limit",
        "-M",
        "retry_after=0.1",
        "--max-connections",
        "4",
    )
    script = tmp_path / "run.sh"
    script.write_text(
        "cd "
        + str(tmp_path)
        + "\n"
        + " ".join(f"'{a}'" for a in command)
        + f"\necho EXIT=$? > {done}\nsleep 60\n"
    )
    tmux_cmd = [tmux, "-S", str(tmp_path / "tmux.sock"), "-u"]  # a server of its own

    def capture(*extra: str) -> str:
        return subprocess.run(
            [*tmux_cmd, "capture-pane", "-p", "-J", "-t", "g", *extra],
            capture_output=True,
            text=True,
            check=True,
            env=environment(),
        ).stdout

    subprocess.run(
        [*tmux_cmd, "new-session", "-d", "-s", "g", "-x", "80", "-y", "24", f"sh {script}"],
        check=True,
        env=environment(),
    )
    try:
        live = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not done.exists():
            screen = capture()
            if "ETA" in screen and "in flight" in screen:
                live = screen
            time.sleep(0.2)
        assert done.exists() and done.read_text().strip() == "EXIT=0", capture("-S", "-")
        assert live, "the live display never showed"
        lines = live.splitlines()  # -J joins wrapped lines: a wrap would show as a long line
        assert all(len(line.rstrip()) <= 80 for line in lines), live
        assert "mock/slow-model " in live and "mock/another-model-with-a-long-name " in live
        assert "|" not in live and "rate-limited" in live and "tokens/min" in live
        assert "…" not in live  # nothing cut
        final = capture("-S", "-")
        # The live frame was cleared; the results table is printed once.
        assert "ETA" not in final and "in flight" not in final, final
        assert final.count("results") == 1 and "match/accuracy" in final
    finally:
        subprocess.run([*tmux_cmd, "kill-server"], check=False, env=environment())


def test_piped_output_gets_plain_lines(tmp_path: Path) -> None:
    command = gauge_command(
        tmp_path, "-T", "n=60", "-m", "mock/piped", "-M", "latency=0.1", "--max-connections", "4"
    )
    done = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\x1b" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("[mock/piped] ")]
    assert lines and re.match(r"\[mock/piped\] \d+/60 samples, .*/s, ETA ", lines[0]), done.stderr
    assert "60/60 samples" in lines[-1] and "done in" in lines[-1]
    assert "match/accuracy" in done.stdout and done.stdout.count("results") == 1


def test_ctrl_c_prints_the_journal_and_the_resume_command(tmp_path: Path) -> None:
    command = gauge_command(
        tmp_path, "-T", "n=200", "-m", "mock/slow", "-M", "latency=0.1", "--max-connections", "2"
    )
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        # A shell running the tests in the background (`cmd &`) ignores SIGINT, and
        # children inherit that: restore it, or Ctrl-C could never reach the eval.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        journal = None
        while time.monotonic() < deadline:  # wait until samples are being journaled
            found = list((tmp_path / "logs").glob("*.jsonl"))
            if found and found[0].read_bytes().count(b'"type":"sample"') >= 4:
                journal = found[0]
                break
            time.sleep(0.1)
        assert journal is not None, "the eval never started"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"journal kept at {journal}\nresume with: gauge eval --resume {journal}\n" in err, err
    assert "Traceback" not in err
    summary = orjson.loads(journal.read_bytes().splitlines()[-1])
    assert summary["type"] == "summary" and summary["status"] == "cancelled"
    # The printed command resumes it (faster: the mock's latency set to 0).
    resume = err.split("resume with: gauge eval ")[1].splitlines()[0].split()
    again = [*command[:4], *resume, "-M", "latency=0", "--no-display"]
    done = subprocess.run(again, capture_output=True, text=True, env=environment(), timeout=120)
    assert done.returncode == 0 and "200/200 (0 err)" in done.stdout, done.stderr


def test_the_results_table_at_80_columns_breaks_long_model_names_at_a_slash() -> None:
    from gauge.evaluation.results import EvalResult, render_results

    def result(model: str) -> EvalResult:
        metrics = {"match": {"accuracy": 1.0, "stderr": 0.0}}
        return EvalResult("echo", model, "j", "success", metrics, 200, 200, 0, 0, 1.0)

    models = ["mock/slow-model", "mock/another-model-with-a-long-name"]
    text = render_results([result(m) for m in models], 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in text, text
    assert (
        "mock/slow-model" in text and " mock/ " in text and "another-model-with-a-long-name" in text
    )
    wide = render_results([result(m) for m in models], 120)
    assert "mock/another-model-with-a-long-name" in wide  # room enough: on one line
