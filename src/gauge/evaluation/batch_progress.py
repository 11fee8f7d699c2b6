"""A run's provider batch jobs as the live display shows them.

`BatchBoard` is the run's `BatchObserver` (gauge.model.batch.api): the batch
stage tells it about each job when it is submitted, polled and finished. It
keeps the latest state of every job, and the display reads it:

- on a terminal, one line under the run: jobs submitted (not started yet),
  in progress and done, with the requests in each and how long the oldest
  has waited (`batches: 1 submitted (100) · 2 in progress (1,200/5,000 done)
  · 1 done (100) · waiting 1h 12m`);
- without a terminal, a line per job state change (`batch batch_abc:
  validating -> in_progress, 0/5000 done`) and, while jobs are in flight, a
  heartbeat every `HEARTBEAT` seconds (`batch batch_abc: in_progress
  1200/5000 done, waiting 1h 12m`), so a log shows where a run that waits for
  hours stands. Past `HEARTBEAT_JOBS` jobs in flight the heartbeat is one
  summary line for the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gauge.model.batch.api import BatchRecord, BatchState, BatchStatus

HEARTBEAT = 300.0
"""Seconds between plain heartbeat lines while a run waits on batch jobs."""
HEARTBEAT_JOBS = 3
"""Jobs in flight up to which each gets its own heartbeat line (more: one summary)."""
NEWS_KEPT = 1000
"""State-change lines kept until read (a terminal display never reads them)."""

_QUEUED = frozenset({"validating"})
_FINAL = frozenset({"completed", "failed", "expired", "cancelled"})


def span(seconds: float) -> str:
    """A duration for people: 45s, 12m, 1h 12m, 2d 3h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


@dataclass(slots=True)
class _Job:
    job_id: str
    submitted: float
    """Unix time the job was submitted (by this run or the one it resumes)."""
    requests: int
    state: str = "validating"
    completed: int = 0
    failed: int = 0
    said: float = 0.0
    """time.monotonic() of its last plain line."""

    @property
    def done(self) -> bool:
        return self.state in _FINAL

    def progress(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.completed}/{self.requests} done{failed}"


@dataclass(slots=True)
class BatchCounts:
    """Jobs and their requests in each phase: submitted (not started), in progress, done."""

    submitted: int = 0
    submitted_requests: int = 0
    in_progress: int = 0
    in_progress_done: int = 0
    in_progress_requests: int = 0
    done: int = 0
    done_requests: int = 0
    oldest: float | None = None
    """Unix submission time of the oldest job in flight (None: none in flight)."""


class BatchBoard:
    """The batch jobs of one run, as last reported by the batch stage."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self._news: list[str] = []

    def attach(self, record: BatchRecord) -> None:
        """A job an earlier part of the run submitted is waited on again (resume)."""
        if record.job_id in self.jobs:
            return
        job = self.jobs[record.job_id] = _Job(
            record.job_id, record.submitted, len(record.custom_ids)
        )
        job.state, job.said = record.state, time.monotonic()
        ago = f", submitted {span(time.time() - record.submitted)} ago" if record.submitted else ""
        self._tell(f"batch {job.job_id}: re-attached, {job.requests} requests{ago}")

    def job(self, record: BatchRecord, status: BatchStatus) -> None:
        """A job was submitted (or re-attached), polled, or finished."""
        job = self.jobs.get(record.job_id)
        state: BatchState = status.state
        requests = status.total or len(record.custom_ids)
        if job is None:
            job = self.jobs[record.job_id] = _Job(record.job_id, record.submitted, requests)
            job.state, job.completed, job.failed = state, status.completed, status.failed
            job.said = time.monotonic()
            where = "" if state in _QUEUED else f", {state} {job.progress()}"
            self._tell(f"batch {job.job_id}: submitted, {requests} requests{where}")
            return
        before = job.state
        job.requests = requests or job.requests
        job.state, job.completed, job.failed = state, status.completed, status.failed
        if state == before:
            return
        job.said = time.monotonic()
        line = f"batch {job.job_id}: {before} -> {state}, {job.progress()}"
        if job.done:
            line += f" after {span(time.time() - job.submitted)}"
            if status.message:
                line += f" ({status.message})"
        self._tell(line)

    def _tell(self, line: str) -> None:
        self._news.append(line)
        if len(self._news) > NEWS_KEPT:
            del self._news[:-NEWS_KEPT]

    def counts(self) -> BatchCounts:
        """How many jobs (and requests) are in each phase now."""
        out = BatchCounts()
        for job in self.jobs.values():
            if job.done:
                out.done += 1
                out.done_requests += job.requests
                continue
            out.oldest = job.submitted if out.oldest is None else min(out.oldest, job.submitted)
            if job.state in _QUEUED:
                out.submitted += 1
                out.submitted_requests += job.requests
            else:
                out.in_progress += 1
                out.in_progress_done += job.completed + job.failed
                out.in_progress_requests += job.requests
        return out

    def waiting(self) -> bool:
        """Whether any job is still in flight."""
        return any(not job.done for job in self.jobs.values())

    def take_news(self) -> list[str]:
        """Plain lines about state changes since the last call."""
        news, self._news = self._news, []
        return news

    def heartbeats(self, now: float | None = None, every: float | None = None) -> list[str]:
        """Plain lines for the jobs in flight that have been quiet for `every` seconds
        (default `HEARTBEAT`); `now` is time.monotonic()."""
        now = time.monotonic() if now is None else now
        every = HEARTBEAT if every is None else every
        flying = [job for job in self.jobs.values() if not job.done]
        if not flying or all(now - job.said < every for job in flying):
            return []
        for job in flying:
            job.said = now
        if len(flying) > HEARTBEAT_JOBS:
            c = self.counts()
            oldest = span(time.time() - c.oldest) if c.oldest is not None else "-"
            return [
                f"batches: {c.submitted} submitted, {c.in_progress} in progress "
                f"({c.in_progress_done}/{c.in_progress_requests} done), {c.done} done, "
                f"waiting {oldest}"
            ]
        return [
            f"batch {job.job_id}: {job.state} {job.progress()}, "
            f"waiting {span(time.time() - job.submitted)}"
            for job in flying
        ]

    def line(self, width: int) -> str | None:
        """The terminal line under the run (None while it has no jobs), within `width`."""
        if not self.jobs:
            return None
        c = self.counts()
        wait = f" · waiting {span(time.time() - c.oldest)}" if c.oldest is not None else ""
        long = (
            f"  batches: {c.submitted} submitted ({c.submitted_requests:,}) · "
            f"{c.in_progress} in progress ({c.in_progress_done:,}/{c.in_progress_requests:,} "
            f"done) · {c.done} done ({c.done_requests:,}){wait}"
        )
        if len(long) <= width:
            return long
        short = (
            f"  batches {c.submitted} sub · {c.in_progress} run "
            f"{c.in_progress_done}/{c.in_progress_requests} · {c.done} done{wait}"
        )
        return short if len(short) <= width else short[: max(width - 1, 0)] + "…"
