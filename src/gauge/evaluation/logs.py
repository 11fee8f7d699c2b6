"""A folder of eval journals as data: `read_logs("logs/")`, then tables or DataFrames.

`read_logs` takes folders (searched recursively for `*.jsonl` journals) and files,
and returns `Logs`: the runs read back (`gauge.evaluation.journal.Journal`, one
per journal), `.sample_rows()` / `.run_rows()` as plain dicts, and
`.samples_df()` (also `.to_pandas()`) / `.runs_df()` as pandas DataFrames. pandas
is imported only there (`pip install 'gauge[pandas]'`).

Journals written before the header carried `schema_version` are read as schema 1;
a journal from a newer schema is read as far as this version understands it, with
a warning (docs/journal.md: versioning).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gauge.errors import MissingExtra
from gauge.evaluation.journal import Journal, JournalError, read_journal
from gauge.evaluation.journal_schema import SCHEMA_VERSION
from gauge.evaluation.metrics import value_to_float
from gauge.evaluation.rows import sample_row


def run_id(journal: Journal) -> str:
    """A run's id: its journal's file name without `.jsonl` (time, task, model, suffix)."""
    return journal.path.stem


def schema_version(journal: Journal) -> int:
    """The schema a journal was written with (1 for journals older than the field)."""
    value = journal.header.get("schema_version", 1)
    return value if isinstance(value, int) else 1


@dataclass
class Logs:
    """Eval runs read back from their journals, in path order."""

    runs: list[Journal] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    """`.jsonl` files found in the folders given that are not gauge journals (datasets, ...)."""

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Journal]:
        return iter(self.runs)

    def sample_rows(self) -> list[dict[str, Any]]:
        """One dict per sample and epoch (the latest line of each), over every run."""
        return [row for journal in self.runs for row in _sample_rows(journal)]

    def run_rows(self) -> list[dict[str, Any]]:
        """One dict per run: task, model, status, counts, tokens, cost, time, metrics."""
        return [_run_row(journal) for journal in self.runs]

    def samples_df(self) -> Any:
        """One DataFrame row per sample and epoch (columns: docs/journal.md#reading-logs)."""
        return _pandas().DataFrame(self.sample_rows())

    def to_pandas(self) -> Any:
        """The samples as a DataFrame (the same as `samples_df()`)."""
        return self.samples_df()

    def runs_df(self) -> Any:
        """One DataFrame row per run."""
        return _pandas().DataFrame(self.run_rows())


def read_logs(*paths: str | Path) -> Logs:
    """Read eval journals: folders (searched recursively for `*.jsonl`) and files.

    A file named explicitly must be a gauge journal; in a folder, `.jsonl` files
    that are not (datasets, say) are listed in `Logs.skipped`.
    """
    if not paths:
        raise JournalError("read_logs needs a folder or journal file, e.g. read_logs('logs/')")
    logs = Logs()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            _read_folder(path, logs)
        elif path.exists():
            logs.runs.append(_read(path))
        else:
            raise JournalError(
                f"{path} not found; give a log folder (gauge eval --log-dir) or a .jsonl journal"
            )
    if not logs.runs:
        where = ", ".join(str(p) for p in paths)
        raise JournalError(f"no gauge journals in {where}; run gauge eval, or give its --log-dir")
    return logs


def _read_folder(folder: Path, logs: Logs) -> None:
    for path in sorted(folder.rglob("*.jsonl")):
        try:
            logs.runs.append(_read(path))
        except JournalError:
            logs.skipped.append(path)


def _read(path: Path) -> Journal:
    journal = read_journal(path)
    if schema_version(journal) > SCHEMA_VERSION:
        warnings.warn(
            f"{path} was written with journal schema {schema_version(journal)}, newer than "
            f"this gauge reads ({SCHEMA_VERSION}); upgrade gauge to read all of it",
            stacklevel=3,
        )
    return journal


def _sample_rows(journal: Journal) -> Iterable[dict[str, Any]]:
    task = str((journal.header.get("task") or {}).get("name", "?"))
    head = {"run_id": run_id(journal), "log": str(journal.path)}
    for line in journal.samples.values():
        yield head | sample_row(line, task)


def _run_row(journal: Journal) -> dict[str, Any]:
    header = journal.header
    task = header.get("task") or {}
    model = header.get("model") or {}
    summary = journal.summary or {}
    row: dict[str, Any] = {
        "run_id": run_id(journal),
        "log": str(journal.path),
        "task": task.get("name"),
        "model": model.get("name"),
        "provider": model.get("provider"),
        "created": header.get("created"),
        "schema_version": schema_version(journal),
        "gauge_version": (header.get("versions") or {}).get("gauge"),
        "dataset": task.get("dataset"),
        "epochs": task.get("epochs"),
        # A run killed before its summary has none: "incomplete" (resume it to finish).
        "status": summary.get("status", "incomplete"),
        "samples": summary.get("samples", (task.get("samples") or 0) * (task.get("epochs") or 1)),
        "completed": summary.get("completed", len(journal.done())),
        "errors": summary.get("errors", len(journal.samples) - len(journal.done())),
        "tokens": summary.get("tokens"),
        "cost": summary.get("cost"),
        "seconds": summary.get("seconds"),
        "resumes": len(journal.resumes),
        "torn_lines": journal.torn_lines,
    }
    for scorer, metrics in (summary.get("metrics") or {}).items():
        for metric, value in (metrics or {}).items():
            row[f"{scorer}/{metric}"] = _number(value)
    return row


def _number(value: Any) -> float | None:
    try:
        return None if value is None else value_to_float(value)
    except ValueError:
        return None


def _pandas() -> Any:
    try:
        import pandas  # type: ignore[import-untyped,unused-ignore]
    except ModuleNotFoundError:
        raise MissingExtra("logs as DataFrames need pandas: pip install 'gauge[pandas]'") from None
    return pandas
