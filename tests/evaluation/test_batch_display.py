"""The display of a run's batch jobs: a line under the run on a terminal, and
state changes plus heartbeats in plain mode (a run that waits for hours says where it is)."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from rich.console import Console

from gauge.evaluation import batch_progress, progress
from gauge.evaluation.batch_progress import BatchBoard, span
from gauge.evaluation.progress import Counters, ProgressDisplay
from gauge.model.batch.api import BatchRecord, BatchStatus


def record(job_id: str, n: int, ago: float = 0.0) -> BatchRecord:
    ids = [f"{job_id}-{i}" for i in range(n)]
    return BatchRecord(job_id, "openai", "gpt-4o-mini", ids, time.time() - ago)


def board_with_jobs() -> BatchBoard:
    board = BatchBoard()
    board.job(record("batch_a", 100, ago=4320), BatchStatus("validating", total=100))
    board.job(record("batch_b", 5000, ago=600), BatchStatus("in_progress", 5000, 1200))
    board.job(record("batch_c", 300, ago=60), BatchStatus("in_progress", 300, 40, 2))
    board.job(record("batch_d", 250, ago=30), BatchStatus("completed", 250, 250))
    return board


def test_counts_split_jobs_and_requests_by_phase() -> None:
    c = board_with_jobs().counts()
    assert (c.submitted, c.submitted_requests) == (1, 100)
    assert (c.in_progress, c.in_progress_done, c.in_progress_requests) == (2, 1242, 5300)
    assert (c.done, c.done_requests) == (1, 250)
    assert c.oldest is not None and 4310 < time.time() - c.oldest < 4330


def test_span_reads_like_a_person_says_it() -> None:
    assert [span(s) for s in (5, 59, 60, 4320, 90000)] == ["5s", "59s", "1m", "1h 12m", "1d 1h"]


@pytest.mark.parametrize("width", [40, 80, 120])
def test_the_terminal_line_fits_and_says_each_phase(width: int) -> None:
    line = board_with_jobs().line(width)
    assert line is not None and len(line) <= width
    if width >= 120:
        assert line == (
            "  batches: 1 submitted (100) · 2 in progress (1,242/5,300 done) · 1 done (250)"
            " · waiting 1h 12m"
        )
    elif width == 80:
        assert line == "  batches 1 sub · 2 run 1242/5300 · 1 done · waiting 1h 12m"
    assert BatchBoard().line(width) is None  # no jobs: no line


def test_the_live_display_shows_the_batch_line_under_its_run() -> None:
    console = Console(width=80, record=True, force_terminal=True, file=io.StringIO())
    display = ProgressDisplay(console)
    c = Counters(total=5650)
    c.batches = board_with_jobs()
    display.add("openai/gpt-4o-mini", c, None, "arith")
    display.add("mock/other", Counters(total=10), None, "arith")  # no jobs: no line
    console.print(display._render())
    lines = console.export_text().splitlines()
    assert lines[0].startswith("openai/gpt-4o-mini") and "0/5650" in lines[0]
    assert lines[1] == "  batches 1 sub · 2 run 1242/5300 · 1 done · waiting 1h 12m"
    assert lines[2].startswith("mock/other") and len(lines) == 3
    assert all(len(line) <= 80 for line in lines)


def plain(monkeypatch: pytest.MonkeyPatch) -> tuple[ProgressDisplay, Counters, Any]:
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    console = Console(width=80, file=io.StringIO())  # not a terminal
    display = ProgressDisplay(console)
    c = Counters(total=8)
    display.add("openai/gpt-4o-mini", c, None, "t")
    return display, c, console


def said(console: Any) -> list[str]:
    lines: list[str] = console.file.getvalue().splitlines()
    console.file.seek(0)
    console.file.truncate()
    return lines


def tick(display: ProgressDisplay) -> None:
    display._last_draw = 0.0  # redraws are throttled to REFRESH_HZ
    display.tick()


def test_plain_mode_prints_state_changes_and_a_heartbeat_while_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    display, c, console = plain(monkeypatch)
    board = c.batches
    tick(display)
    assert said(console) == ["[openai/gpt-4o-mini] 0/8 samples, 0.0/s, ETA -:--, errors 0, "
                             "rate-limited 0"]  # fmt: skip
    job = record("batch_abc", 8, ago=4320)
    board.job(job, BatchStatus("validating", total=8))
    board.job(job, BatchStatus("validating", total=8))  # polled, unchanged: no line
    tick(display)
    assert said(console) == ["[openai/gpt-4o-mini] batch batch_abc: submitted, 8 requests"]
    board.job(job, BatchStatus("in_progress", total=8, completed=3))
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)  # a sample line would be due each tick...
    tick(display)
    assert said(console) == [
        "[openai/gpt-4o-mini] batch batch_abc: validating -> in_progress, 3/8 done"
    ]
    tick(display)
    assert said(console) == []  # ...but while jobs are in flight their heartbeat replaces it
    monkeypatch.setattr(batch_progress, "HEARTBEAT", 0.0)
    tick(display)
    assert said(console) == [
        "[openai/gpt-4o-mini] batch batch_abc: in_progress 3/8 done, waiting 1h 12m"
    ]
    board.job(job, BatchStatus("completed", total=8, completed=8))
    c.done = 8
    tick(display)
    out = said(console)
    assert (
        out[0]
        == "[openai/gpt-4o-mini] batch batch_abc: in_progress -> completed, 8/8 done after 1h 12m"
    )
    assert out[1].startswith("[openai/gpt-4o-mini] 8/8 samples") and len(out) == 2


def test_heartbeats_come_every_interval_and_in_one_line_for_many_jobs() -> None:
    board = BatchBoard()
    for i in range(2):
        board.job(record(f"b{i}", 10, ago=120), BatchStatus("in_progress", 10, i))
    start = time.monotonic()
    assert board.heartbeats(start + 10, every=300) == []  # quiet for 10 s only
    assert board.heartbeats(start + 301, every=300) == [
        "batch b0: in_progress 0/10 done, waiting 2m",
        "batch b1: in_progress 1/10 done, waiting 2m",
    ]
    assert board.heartbeats(start + 302, every=300) == []  # just said
    for i in range(2, 6):
        board.job(record(f"b{i}", 10, ago=120), BatchStatus("validating", 10))
    assert board.heartbeats(start + 700, every=300) == [
        "batches: 4 submitted, 2 in progress (1/20 done), 0 done, waiting 2m"
    ]
