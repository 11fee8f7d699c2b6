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
from decimal import Decimal
from typing import Any

from gauge.evaluation.metrics import Metric, Reducer, value_to_float
from gauge.model.cost import usd


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
    cost: Decimal | None = None
    """USD spent by the run (cache hits cost 0); None: unknown (a model without a price)."""

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
            # A float of the exact Decimal (its digits survive); null: unknown, never 0.
            "cost": None if self.cost is None else float(self.cost),
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


def results_table(results: Sequence[EvalResult], width: int | None = None) -> Any:
    """A rich Table: one row per task metric, one column per model.

    Given the terminal's `width`, model names too long for it break after a `/`
    (`openai-api/` over `meta-llama/Llama-3.1-8B-Instruct`) rather than being cut.
    """
    from rich.table import Table

    models = list(dict.fromkeys(r.model for r in results))
    rows = metric_rows(results)
    status: dict[str, dict[str, str]] = {}
    costs: dict[str, dict[str, str]] = {}
    for r in results:
        status.setdefault(r.task, {})[r.model] = f"{r.completed}/{r.samples} ({r.errors} err)"
        costs.setdefault(r.task, {})[r.model] = usd(r.cost)
    headers = models
    if width is not None:
        cells = [c for _, _, row in rows for c in row.values()] + [
            c for row in status.values() for c in row.values()
        ]
        cell = max((len(c) for c in cells), default=1)
        fixed = max((len(t) for t in status), default=4) + max(
            (len(n) for _, n, _ in rows), default=7
        )
        if fixed + sum(max(len(m), cell) for m in models) + 3 * len(models) + 7 > width:
            headers = [_break_name(m, cell) for m in models]
    table = Table(title="results", title_justify="left")
    table.add_column("task")
    table.add_column("metric")
    for header in headers:
        table.add_column(header, justify="right", overflow="fold")
    for task, name, row in rows:
        table.add_row(task, name, *(row.get(m, "-") for m in models))
    for task, row in status.items():
        table.add_row(task, "samples", *(row.get(m, "-") for m in models), style="dim")
        table.add_row(task, "cost", *(costs[task].get(m, "-") for m in models), style="dim")
    return table


def total_cost(results: Sequence[EvalResult]) -> str:
    """The runs' total spend, e.g. "total cost: $1.2345 (3 runs)", or why it is unknown."""
    known = [r.cost for r in results if r.cost is not None]
    unpriced = sorted({r.model for r in results if r.cost is None})
    if not unpriced:
        return f"total cost: {usd(sum(known, Decimal(0)))} ({len(results)} run(s))"
    priced = f"; {usd(sum(known, Decimal(0)))} for the priced runs" if known else ""
    return (
        f"total cost: unknown ({', '.join(unpriced)} has no price{priced}); "
        "price it with --model-cost-config"
    )


def _break_name(name: str, width: int) -> str:
    """`name` on lines of at most `width` characters, broken only after a `/` (where it can)."""
    lines = [""]
    for part in name.split("/"):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part + "/"
    return "\n".join(lines)[:-1]


def render_results(results: Sequence[EvalResult], width: int = 120) -> str:
    """The results table as plain text."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(results_table(results, width))
    return console.export_text()
