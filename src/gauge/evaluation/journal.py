"""The run journal: one append-only JSONL file per (task, model) run.

    {"type": "header", ...}    task, model info, config layers, resolved settings, versions
    {"type": "resume", ...}    a resumed run started: the settings it resolved to
    {"type": "sample", ...}    one per finished sample (id, epoch, input, output, scores, ...)
    {"type": "batch", ...}     a provider batch job was submitted, or finished (see below)
    {"type": "not_run", ...}   samples left out when a run stopped early (why, which)
    {"type": "summary", ...}   results, written when the run ends (also when it fails)

Batch lines (gauge.evaluation.batches) are written and flushed (then fsynced)
before the create call ("intent": a fresh random token the job is tagged with)
and before the batch stage waits on the job ("submitted"), so a run killed at
any moment re-attaches on resume instead of paying again; an intent with no
submitted line of its token is looked up at the provider by that token:

    {"type": "batch", "event": "intent", "token": "9f2c...", "provider": "openai",
     "model": "gpt-4o-mini", "custom_ids": ["<digest>-0", ...],
     "submitted": 1765000000.0, "time": "2026-12-06T08:00:00+00:00"}
    {"type": "batch", "event": "submitted", "job_id": "batch_abc", "token": "9f2c...",
     "provider": "openai", "model": "gpt-4o-mini", "custom_ids": ["<digest>-0", ...],
     "submitted": 1765000000.0, "state": "validating", "time": "..."}
    {"type": "batch", "event": "finished", "job_id": "batch_abc", "state": "completed",
     "time": "..."}

Lines are serialised with orjson, redacted, and written through a buffer that is
flushed to the OS every `FLUSH_LINES` lines or `FLUSH_SECONDS`, whichever comes
first. A `kill -9` therefore loses the samples in flight plus at most one
unflushed batch (< FLUSH_LINES lines, at most FLUSH_SECONDS old). A resumed
run appends to the same file; a torn last line (killed mid-write) is skipped on
read and cut off before appending. For one (id, epoch), the last line wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from gauge.errors import GaugeError
from gauge.evaluation.redact import Redactor

FLUSH_LINES = 64
FLUSH_SECONDS = 0.25


class JournalError(GaugeError, ValueError):
    """A journal file is missing or not a gauge journal."""

    exit_code = 2


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def dumps(record: dict[str, Any]) -> bytes:
    """One journal record as JSON bytes (non-JSON values become their repr)."""
    return orjson.dumps(record, default=_default, option=orjson.OPT_NON_STR_KEYS)


class JournalWriter:
    """Appends redacted JSON lines, flushing in small batches."""

    def __init__(self, path: Path, redactor: Redactor, append: bool = False) -> None:
        self.path = path
        self.redactor = redactor
        path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            _cut_torn_tail(path)
        self._file: IO[bytes] = open(path, "ab" if append else "xb")  # noqa: SIM115
        self._pending = 0
        self._last_flush = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; flush when the batch is full or old enough."""
        self._file.write(self.redactor.line(dumps(record)) + b"\n")
        self._pending += 1
        if self._pending >= FLUSH_LINES or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def write_now(self, record: dict[str, Any]) -> None:
        """Append one record, with every line before it, and hand it to the OS before
        returning (it survives a kill of the process from here on); then fsync it.

        For the few records a resumed run must find (batch jobs: money already
        spent), never for samples. Inside an event loop the fsync runs on a worker
        thread: it takes milliseconds, and blocking the loop for them would delay
        the recording of other jobs being created at the same moment (a kill in
        between pays for those twice). A power loss within those milliseconds may
        lose the line; a kill cannot.
        """
        self._file.write(self.redactor.line(dumps(record)) + b"\n")
        self._file.flush()
        self._pending = 0
        self._last_flush = time.monotonic()
        fd = self._file.fileno()
        try:
            asyncio.get_running_loop().run_in_executor(None, _fsync_quietly, fd)
        except RuntimeError:  # no loop running (or it is shutting down): here and now
            os.fsync(fd)

    @property
    def closed(self) -> bool:
        """Whether the run ended and the file was closed."""
        return self._file.closed

    def flush(self) -> None:
        """Hand buffered lines to the OS (they survive a process kill from here on)."""
        if self._pending:
            self._file.flush()
            self._pending = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close (fsync once, so the finished journal survives a power loss too)."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _fsync_quietly(fd: int) -> None:
    # The writer may have closed the file meanwhile (close() fsyncs it itself).
    with contextlib.suppress(OSError):
        os.fsync(fd)


def _cut_torn_tail(path: Path) -> None:
    with open(path, "rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return
        file.seek(max(0, size - 1))
        if file.read(1) == b"\n":
            return
        # Find the last newline and truncate after it.
        block = min(size, 1 << 20)
        file.seek(size - block)
        tail = file.read(block)
        cut = tail.rfind(b"\n")
        file.truncate(size - block + cut + 1 if cut >= 0 else 0)


@dataclass
class Journal:
    """A journal read back: its header, latest sample line per (id, epoch), summaries."""

    path: Path
    header: dict[str, Any]
    samples: dict[tuple[Any, int], dict[str, Any]] = field(default_factory=dict)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    torn_lines: int = 0
    resumes: list[dict[str, Any]] = field(default_factory=list)
    """The "resume" lines, in order (each records the settings that part ran with)."""
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Batch jobs by job id, in submission order: the "submitted" line's fields, with
    the later lines' `state` (and `"finished": true` once a "finished" line came)."""
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Batch "intent" lines by token (a job about to be created); one whose token no
    job in `batches` carries was cut off inside its create call."""

    @property
    def settings(self) -> dict[str, Any]:
        """Where the latest settings are recorded: the last resume line, else the header."""
        return next((r for r in reversed(self.resumes) if "config_layers" in r), self.header)

    @property
    def summary(self) -> dict[str, Any] | None:
        """The last summary written (None if the run never finished)."""
        return self.summaries[-1] if self.summaries else None

    def done(self) -> set[tuple[Any, int]]:
        """(id, epoch) pairs that finished without error."""
        return {key for key, line in self.samples.items() if not line.get("error")}


def iter_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, record) for each line; None for a line that is not JSON."""
    try:
        file = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise JournalError(
            f"journal {path} not found; give a .jsonl file written by gauge eval"
        ) from None
    except OSError as ex:
        raise JournalError(f"cannot read journal {path}: {ex.strerror}") from None
    with file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield number, None
                continue
            yield number, record if isinstance(record, dict) else None


def read_journal(path: str | Path) -> Journal:
    """Read a journal; a torn line (from a killed run) is counted and skipped."""
    path = Path(path)
    journal: Journal | None = None
    torn = 0
    for number, record in iter_lines(path):
        if record is None:
            if journal is None:  # a journal starts with its header, written whole
                raise JournalError(
                    f"{path}:{number}: not a gauge journal (the first line is not a JSON "
                    "object); give a .jsonl file written by gauge eval"
                )
            torn += 1
            continue
        kind = record.get("type")
        if journal is None:
            if kind != "header":
                raise JournalError(f"{path}:{number}: not a gauge journal (no header line first)")
            journal = Journal(path, record)
        elif kind == "sample":
            journal.samples[(_key_id(record.get("id")), int(record.get("epoch", 1)))] = record
        elif kind == "summary":
            journal.summaries.append(record)
        elif kind == "resume":
            journal.resumes.append(record)
        elif kind == "batch" and record.get("event") == "intent":
            if isinstance(token := record.get("token"), str):
                journal.intents[token] = record
        elif kind == "batch":
            _add_batch(journal.batches, record)
    if journal is None:
        raise JournalError(f"{path}: empty journal; it has no header line")
    journal.torn_lines = torn
    return journal


def _key_id(value: Any) -> Any:
    # Ids round-trip through JSON: keep ints and strings, and compare them as such.
    return value if isinstance(value, int | str) else str(value)


def _add_batch(batches: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    job_id = record.get("job_id")
    if not isinstance(job_id, str):
        return  # not a line this version wrote: nothing to re-attach to
    merged = batches.setdefault(job_id, {})
    merged.update({k: v for k, v in record.items() if k not in ("type", "event")})
    if record.get("event") == "finished":
        merged["finished"] = True
