"""Aggregate per-sample scores into metrics, and render the results table.

With one epoch, scores are kept as a flat array of floats per scorer (8 bytes a
sample); with several, as one list of epoch values per (scorer, sample id), so
epochs can be reduced at the end.
"""

from __future__ import annotations

import io
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gauge.evaluation.metrics import Metric, Reducer, value_to_float


@dataclass(slots=True)
class Aggregator:
    """Collects score values while a run goes, computes metrics at the end."""

    metrics: dict[str, tuple[Metric, ...]]
    reducer: Reducer
    epochs: int = 1
    values: dict[str, dict[Any, list[float]]] = field(default_factory=dict)
    flat: dict[str, array[float]] = field(default_factory=dict)

    def add(self, sample_id: Any, scores: dict[str, Any]) -> None:
        """Record one finished sample's scores ({scorer: {"value": ...}} or Score objects).

        Each (sample, epoch) must be added once (the runner guarantees it).
        """
        for name, score in scores.items():
            value = value_to_float(score["value"] if isinstance(score, dict) else score.value)
            if self.epochs == 1:
                if (column := self.flat.get(name)) is None:
                    column = self.flat[name] = array("d")
                column.append(value)
            else:
                per_sample = self.values.setdefault(name, {})
                per_sample.setdefault(sample_id, []).append(value)

    def compute(self) -> dict[str, dict[str, float]]:
        """{scorer: {metric: value}} over samples, epochs reduced first."""
        out: dict[str, dict[str, float]] = {}
        for name, metrics in self.metrics.items():
            reduced: Sequence[float]
            if self.epochs == 1:
                reduced = self.flat.get(name, array("d"))
            else:
                reduced = [self.reducer(v) for v in self.values.get(name, {}).values()]
            out[name] = {m.name: _clean(m(reduced)) for m in metrics}
        return out


def _clean(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


@dataclass(slots=True)
class EvalResult:
    """The outcome of one task on one model."""

    task: str
    model: str
    journal: str
    status: str
    """success | error | cancelled"""
    metrics: dict[str, dict[str, float]]
    samples: int
    completed: int
    errors: int
    tokens: int
    seconds: float
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the journal's summary line)."""
        return {
            "task": self.task,
            "model": self.model,
            "status": self.status,
            "metrics": self.metrics,
            "samples": self.samples,
            "completed": self.completed,
            "errors": self.errors,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 4),
            "message": self.message,
        }


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}"


def metric_rows(results: Sequence[EvalResult]) -> list[tuple[str, str, dict[str, str]]]:
    """(task, "scorer/metric", {model: "value ± stderr"}) rows for a side-by-side table."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for result in results:
        for scorer, values in result.metrics.items():
            err = values.get("stderr")
            for metric, value in values.items():
                if metric == "stderr":
                    continue
                cell = _fmt(value) + (f" ± {_fmt(err)}" if err is not None else "")
                rows.setdefault((result.task, f"{scorer}/{metric}"), {})[result.model] = cell
    return [(task, name, cells) for (task, name), cells in rows.items()]


def results_table(results: Sequence[EvalResult]) -> Any:
    """A rich Table: one row per task metric, one column per model."""
    from rich.table import Table

    models = list(dict.fromkeys(r.model for r in results))
    table = Table(title="results", title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    for model in models:
        table.add_column(model, justify="right")
    for task, name, cells in metric_rows(results):
        table.add_row(task, name, *(cells.get(m, "-") for m in models))
    status: dict[str, dict[str, str]] = {}
    for r in results:
        status.setdefault(r.task, {})[r.model] = f"{r.completed}/{r.samples} ({r.errors} err)"
    for task, cells in status.items():
        table.add_row(task, "samples", *(cells.get(m, "-") for m in models), style="dim")
    return table


def render_results(results: Sequence[EvalResult], width: int = 120) -> str:
    """The results table as plain text."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(results_table(results))
    return console.export_text()
