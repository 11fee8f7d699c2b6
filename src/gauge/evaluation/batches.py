"""Provider batch jobs in an eval run: journaled before anyone waits on them.

The model layer's batch stage (gauge.model.batch) collects requests into
provider batch jobs and reports each job to the `BatchLedger` it finds in the
caller's context (`batch_ledger`). For an eval run that ledger is a
`JournalLedger` on the run's journal:

- `intended(record)` writes a `{"type": "batch", "event": "intent", ...}` line
  (a fresh random token, provider, model, custom ids, time) and hands it to the
  OS before the create call (JournalWriter.write_now; fsynced right after); the
  job is created tagged with the token;
- `submitted(record)` writes a `{"type": "batch", "event": "submitted", ...}`
  line (job id, token, provider, model, custom ids, state, times) the same
  way, before the stage waits on the job;
- `finished(record)` writes an `"event": "finished"` line the same way;
- `find(custom_id)` answers from the jobs of the runs this one resumes (loaded
  from the journal's batch lines): the stage re-attaches to that job instead
  of submitting the request again. Custom ids are deterministic
  (gauge.model.batch.ids), so the same request finds its job. An intent with
  no submitted line of the same token (a kill inside the create call) is
  answered as an intent: the stage looks its token up at the provider and
  calls `resolved(record)`: a job found is re-attached and recorded with a
  submitted line; none found, the intent is forgotten and its requests are sent.

A job recorded as finished stays findable on resume, unless it failed as a
whole: the stage hands out a job's answers, then the samples are scored and
journaled (lines flushed in small batches), so a kill between the two loses
sample lines whose answers are paid for. Re-attaching reads them again from
the provider's results for free; treating the job as spent would pay twice.
(A sample whose line is in the journal is done and sends no request, so its
answer is not read again.) Once a re-attached job is finished in this run, it
is forgotten: a request it left unanswered (expired, cancelled) goes into a
new job.

`JournalLedger.enter` sets the ledger and the run's display board
(`batch_observer`) around the run's samples. A run stopped by Ctrl-C records
the jobs it leaves in flight (`interrupted`, read by `take_left_running`), so
the CLI can offer to leave them running (resume re-attaches) or cancel them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

from gauge.model.batch.api import (
    FINAL_STATES,
    BatchRecord,
    BatchState,
    batch_ledger,
    batch_observer,
)

if TYPE_CHECKING:
    from gauge.evaluation.batch_progress import BatchBoard
    from gauge.evaluation.journal import Journal, JournalWriter
    from gauge.model.model import Model

_STATES: frozenset[str] = frozenset(get_args(BatchState))
log = logging.getLogger("gauge.eval")


def record_line(event: str, record: BatchRecord) -> dict[str, Any]:
    """The journal line of a job `event` ("intent", "submitted" or "finished")."""
    line: dict[str, Any] = {"type": "batch", "event": event}
    if event != "intent":
        line["job_id"] = record.job_id
    if event != "finished":
        line |= {
            "token": record.token,
            "provider": record.provider,
            "model": record.model,
            "custom_ids": record.custom_ids,
            "submitted": record.submitted,
        }
    if event != "intent":
        line["state"] = record.state
    line["time"] = datetime.now(UTC).isoformat()
    return line


def journal_records(journal: Journal) -> list[BatchRecord]:
    """The jobs recorded in `journal`, with their latest state, and the intents no
    submitted line resolves (job id ""), in the order they were made.

    A line this version cannot read (no custom ids, an unknown state) is left out:
    its requests are submitted again rather than waited on forever.
    """
    out = []
    for job_id, line in journal.batches.items():
        record = _record(job_id, line, line.get("state"))
        if record is not None:
            out.append(record)
    tokens = {line.get("token") for line in journal.batches.values()}
    for token, line in journal.intents.items():
        record = _record("", line, "validating")
        if token not in tokens and record is not None:
            out.append(record)
    out.sort(key=lambda record: record.submitted)  # a later job (or intent) holds the retry
    return out


def _record(job_id: str, line: dict[str, Any], state: Any) -> BatchRecord | None:
    ids = line.get("custom_ids")
    if not isinstance(ids, list) or state not in _STATES:
        return None
    return BatchRecord(
        job_id=job_id,
        provider=str(line.get("provider", "")),
        model=str(line.get("model", "")),
        custom_ids=[str(i) for i in ids],
        submitted=float(line.get("submitted") or 0.0),
        state=state,
        token=str(line.get("token") or ""),
    )


@dataclass(slots=True)
class LeftRunning:
    """Batch jobs a run stopped by Ctrl-C left in flight."""

    journal: str
    model: Model
    jobs: list[BatchRecord] = field(default_factory=list)


_left: list[LeftRunning] = []


def take_left_running() -> list[LeftRunning]:
    """The jobs left in flight by runs interrupted since the last call."""
    out = list(_left)
    _left.clear()
    return out


class JournalLedger:
    """The BatchLedger of one eval run: its jobs, written to its journal before waiting."""

    def __init__(
        self,
        writer: JournalWriter,
        previous: list[BatchRecord] | None = None,
        board: BatchBoard | None = None,
    ) -> None:
        self._writer = writer
        self._board = board
        self._by_id: dict[str, BatchRecord] = {}
        self._jobs: set[str] = set()
        for record in previous or ():
            if record.job_id:
                self._jobs.add(record.job_id)
            if record.state == "failed":
                continue  # refused as a whole: its requests go in a new job
            for custom_id in record.custom_ids:
                self._by_id[custom_id] = record  # a later job wins: it holds the retry
        self.active: dict[str, BatchRecord] = {}
        """Jobs this run submitted or re-attached to that have not finished."""

    def intended(self, record: BatchRecord) -> None:
        """Record, durably, a job about to be created (its token, its requests)."""
        if self._writer.closed:  # the run ended: nobody would read the job's answers
            raise RuntimeError("the run ended before its batch job was created")
        self._writer.write_now(record_line("intent", record))

    def resolved(self, record: BatchRecord) -> None:
        """An earlier run's intent was looked up: re-attach to the job found, or forget it."""
        if not record.job_id:  # never created: its requests go in a new job
            for custom_id in record.custom_ids:
                if self._by_id.get(custom_id) is record:
                    del self._by_id[custom_id]
            return
        self._jobs.add(record.job_id)
        if not self._writer.closed:
            self._writer.write_now(record_line("submitted", record))
        self.active[record.job_id] = record
        if self._board is not None:
            self._board.attach(record)

    def jobs(self) -> Set[str]:
        """Every job this run or the runs it resumes recorded."""
        return self._jobs

    def submitted(self, record: BatchRecord) -> None:
        """Record a new job durably (in the OS, then fsynced) before the stage waits on it."""
        if self._writer.closed:  # the run ended (stopped early) while a job was being sent
            log.warning(
                "batch job %s (%s) was created after its run ended, so no journal records "
                "it; cancel it at %s if you do not want it",
                record.job_id,
                record.model,
                record.provider,
            )
            return
        self._writer.write_now(record_line("submitted", record))
        self._jobs.add(record.job_id)
        self.active[record.job_id] = record

    def finished(self, record: BatchRecord) -> None:
        """Record that a job reached a final state and its answers were handed out."""
        if not self._writer.closed:  # (else a resume re-attaches and reads it again: free)
            self._writer.write_now(record_line("finished", record))
        self.active.pop(record.job_id, None)
        # Its answers are handed out: a request it left unanswered (expired,
        # cancelled) is asked again and must go into a new job, not wait on this one.
        for custom_id in record.custom_ids:
            if self._by_id.get(custom_id) is record:
                del self._by_id[custom_id]

    def enter(self) -> Callable[[], None]:
        """Make this ledger (and its board, as observer) the batch stage's in the
        current context, for the run's samples; returns the undo function."""
        ledger_token = batch_ledger.set(self)
        observer_token = batch_observer.set(self._board)

        def undo() -> None:
            batch_observer.reset(observer_token)
            batch_ledger.reset(ledger_token)

        return undo

    def interrupted(self, journal: str, model: Model) -> None:
        """The run was stopped (Ctrl-C): record the jobs it leaves in flight for the CLI."""
        if self.active:
            _left.append(LeftRunning(journal, model, list(self.active.values())))

    def find(self, custom_id: str) -> BatchRecord | None:
        """The job (or unresolved intent) an earlier part of this run made for `custom_id`."""
        record = self._by_id.get(custom_id)
        if record is not None and not record.intent and record.job_id not in self.active:
            if record.state not in FINAL_STATES:
                self.active[record.job_id] = record
            if self._board is not None:
                self._board.attach(record)
        return record


def left_summary(left: list[LeftRunning]) -> str:
    """`N batch jobs (M requests)` for the Ctrl-C question."""
    jobs = sum(len(entry.jobs) for entry in left)
    requests = sum(len(job.custom_ids) for entry in left for job in entry.jobs)
    return f"{_count(jobs, 'batch job')} ({_count(requests, 'request')})"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")
