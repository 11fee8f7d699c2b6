"""Journals as flat rows: one dict per finished sample, ready for a table or pandas."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gauge.evaluation.journal import Journal, read_journal
from gauge.evaluation.metrics import value_to_float


@dataclass
class EvalLog:
    """One journal read back: header, summary and the samples as rows."""

    path: Path
    header: dict[str, Any]
    summary: dict[str, Any] | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def task(self) -> str:
        """The task's name."""
        return str((self.header.get("task") or {}).get("name", "?"))

    @property
    def model(self) -> str:
        """The evaluated model's name."""
        return str((self.header.get("model") or {}).get("name", "?"))

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ModuleNotFoundError:
            from gauge.errors import GaugeError

            raise GaugeError("to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows)


def _input_text(value: Any) -> str:
    if isinstance(value, list):
        users = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        last = users[-1] if users else ""
        if isinstance(last, list):
            return "\n".join(p.get("text", "") for p in last if isinstance(p, dict))
        return str(last or "")
    return str(value or "")


def sample_row(line: dict[str, Any], task: str) -> dict[str, Any]:
    """One journal sample line as a flat row."""
    output = line.get("output") or {}
    usage = line.get("usage") or {}
    error = line.get("error")
    row: dict[str, Any] = {
        "task": task,
        "model": line.get("model"),
        "id": line.get("id"),
        "epoch": line.get("epoch"),
        "input": _input_text(line.get("input")),
        "target": line.get("target"),
        "completion": output.get("completion"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cost": usage.get("cost"),
        "time": line.get("time"),
        "retries": line.get("retries"),
        "cache": line.get("cache"),
        "error": None if not error else f"{error.get('type')}: {error.get('message')}",
    }
    for name, score in (line.get("scores") or {}).items():
        value = score.get("value") if isinstance(score, dict) else score
        row[f"score_{name}"] = value
        try:
            row[f"score_{name}_num"] = value_to_float(value)
        except ValueError:
            row[f"score_{name}_num"] = None
        if isinstance(score, dict) and "answer" in score:
            row[f"answer_{name}"] = score["answer"]
    return row


def eval_log(journal: Journal) -> EvalLog:
    """A read journal as an EvalLog (latest line per (id, epoch), in file order)."""
    task = str((journal.header.get("task") or {}).get("name", "?"))
    rows = [sample_row(line, task) for line in journal.samples.values()]
    return EvalLog(journal.path, journal.header, journal.summary, rows)


def read_log(path: str | Path) -> EvalLog:
    """Read a `gauge eval` journal: `.rows` are the samples, `.to_pandas()` a DataFrame."""
    return eval_log(read_journal(path))
