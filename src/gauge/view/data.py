"""Journals -> what the viewer shows: one RunView per journal.

A RunView holds the run's summary (for the results table and charts), one short
row per sample (for the table, filters and search: texts cut to `SNIPPET`
characters) and one full detail per sample (the transcript: every message, the
output, scores with explanations, usage, timings, retries, the error with its
attempts). The page packs rows and details separately, so a transcript is only
decoded when it is opened.

Latency: a sample line's `time` runs from the moment the sample started, so it
also counts the wait for a concurrency slot, backoff sleeps, scoring and (in
journals written before the runner loaded local models up front) the model's
load. The model call's own attempt time (`output.model_output.time`) is the
latency the charts use; a cache hit has none (it took no call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError
from gauge.evaluation.journal import Journal, read_journal
from gauge.evaluation.metrics import value_to_float
from gauge.evaluation.rows import EvalLog, eval_log
from gauge.view.costs import run_cost

SNIPPET = 400  # characters of input/target/completion kept per table row (search runs on these)
HEAD = 150  # of a longer text, the row keeps its first HEAD and last SNIPPET - HEAD - 3 characters


@dataclass
class RunView:
    """One journal as the viewer sees it."""

    label: str
    log: EvalLog
    scorers: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        """Model-call seconds per sample (cache hits and samples without a call left out)."""
        return [r["lat"] for r in self.rows if r["lat"] is not None]


def journal_paths(items: Sequence[str | Path]) -> list[Path]:
    """The journals named: files as given, directories as their *.jsonl files."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        paths.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    if not paths:
        raise ConfigError(
            "no .jsonl journals found in the given directories; pass journal files "
            "or a folder that gauge eval wrote (--log-dir)"
        )
    return paths


def load_runs(paths: Sequence[Path]) -> list[RunView]:
    """Read every journal; runs ordered by task, then model."""
    return runs_of([read_journal(path) for path in paths])


def runs_of(journals: Sequence[Journal]) -> list[RunView]:
    """RunViews of read journals, ordered by task then model, with unique labels."""
    runs = [_run(journal) for journal in journals]
    runs.sort(key=lambda r: (r.log.task, r.log.model, str(r.log.path)))
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:  # the same task and model twice: tell them apart
            run.label = f"{run.label} ({run.log.path.stem})"
    return runs


def _run(journal: Journal) -> RunView:
    log = eval_log(journal)
    declared = (journal.header.get("task") or {}).get("scorers") or []
    scorers = [str(s) for s in declared]
    for line in journal.samples.values():
        for name in line.get("scores") or {}:
            if name not in scorers:
                scorers.append(str(name))
    run = RunView(f"{log.task} · {log.model}", log, scorers)
    main = scorers[0] if scorers else None
    for index, line in enumerate(journal.samples.values()):
        run.rows.append(sample_row(index, line, main))
        run.details.append(sample_detail(line))
    return run


def _cut(value: Any) -> str:
    # Head and tail: a long prompt's question is usually at its end.
    text = value if isinstance(value, str) else "" if value is None else _text(value)
    if len(text) <= SNIPPET:
        return text
    return text[:HEAD] + " … " + text[len(text) - (SNIPPET - HEAD - 3) :]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or "")
    return str(value)


def input_text(messages: Any) -> str:
    """The last user message's text (what the table shows as the input)."""
    if not isinstance(messages, list):
        return _text(messages)
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def _number(value: Any) -> float | None:
    try:
        return value_to_float(value)
    except ConfigError:
        return None


def latency(line: dict[str, Any]) -> float | None:
    """The model call's seconds for this sample (see the module docstring)."""
    if line.get("cache") == "hit":
        return None
    model_output = (line.get("output") or {}).get("model_output") or {}
    seconds = model_output.get("time")
    return float(seconds) if isinstance(seconds, int | float) else None


def sample_row(index: int, line: dict[str, Any], main: str | None) -> dict[str, Any]:
    """One sample as a short table row (`index`: where its detail is in the run)."""
    scores = {
        name: (s.get("value") if isinstance(s, dict) else s)
        for name, s in (line.get("scores") or {}).items()
    }
    usage = line.get("usage") or {}
    error = line.get("error")
    output = line.get("output") or {}
    metadata = line.get("metadata")
    return {
        "i": index,
        "id": line.get("id"),
        "ep": line.get("epoch", 1),
        "s": scores,
        "n": _number(scores[main]) if main in scores else None,
        "in": _cut(input_text(line.get("input"))),
        "tg": _cut(line.get("target")),
        "out": _cut(output.get("completion")),
        "tok": usage.get("total_tokens"),
        "cost": usage.get("cost"),
        "lat": latency(line),
        "t": line.get("time"),
        "rt": line.get("retries") or 0,
        "ch": line.get("cache"),
        "err": None if not error else f"{error.get('type')}: {error.get('message')}",
        "md": metadata if isinstance(metadata, dict) else {},
    }


def _conversation(line: dict[str, Any]) -> list[Any]:
    for name in ("messages", "input"):
        if isinstance(value := line.get(name), list):
            return value
    return []


def sample_detail(line: dict[str, Any]) -> dict[str, Any]:
    """Everything the journal recorded about one sample, for its transcript."""
    output = line.get("output") or {}
    return {
        "id": line.get("id"),
        "ep": line.get("epoch", 1),
        # The whole conversation when the solver changed it (several turns, tools, a
        # system message or template), else the input it started from.
        "messages": _conversation(line),
        "target": line.get("target"),
        "completion": output.get("completion"),
        "output": output.get("model_output"),
        "scores": line.get("scores") or {},
        "usage": line.get("usage"),
        "time": line.get("time"),
        "lat": latency(line),
        "retries": line.get("retries") or 0,
        "cache": line.get("cache"),
        "error": line.get("error"),
        "metadata": line.get("metadata") or {},
        "store": line.get("store") or {},
    }


def main_metric(run: RunView) -> tuple[str, float | None, float | None]:
    """(scorer/metric, value, stderr) of the run's first metric; values None when absent."""
    metrics = (run.log.summary or {}).get("metrics") or {}
    for scorer, values in metrics.items():
        for name, value in values.items():
            if name != "stderr":
                stderr = values.get("stderr")
                return (
                    f"{scorer}/{name}",
                    float(value) if isinstance(value, int | float) else None,
                    float(stderr) if isinstance(stderr, int | float) else None,
                )
    return "-", None, None


def run_meta(run: RunView) -> dict[str, Any]:
    """The run-level facts the page's script needs (small: no samples)."""
    summary = run.log.summary or {}
    cost = run_cost(run.log)
    return {
        "label": run.label,
        "task": run.log.task,
        "model": run.log.model,
        "file": run.log.path.name,
        "status": summary.get("status", "unfinished"),
        "samples": len(run.rows),
        "errors": sum(1 for r in run.rows if r["err"]),
        "cost": None if cost is None else float(cost),
        "scorers": run.scorers,
    }
