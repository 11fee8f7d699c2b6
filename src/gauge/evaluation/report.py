"""A static HTML report of one or more journals: tables and inline SVG plots.

One self-contained file (no scripts, fonts or CDNs), so it opens offline and can
be mailed or archived. Plots: the main score per model (with stderr bars),
a latency histogram per model, tokens per model, and errors per model.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from gauge.evaluation.rows import EvalLog

_COLORS = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5"]
_W, _H = 560, 260
_PAD_L, _PAD_B, _PAD_T = 60, 60, 20


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return "-" if value is None else str(value)


def _count(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _label(log: EvalLog) -> str:
    return f"{log.task} · {log.model}"


def _bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    errors: Sequence[float] | None = None,
    unit_scale: bool = False,
    counts: bool = False,
) -> str:
    """A vertical bar chart as SVG (`unit_scale`: a 0..1 axis when every value fits)."""
    finite = [
        v + (errors[i] if errors and not math.isnan(errors[i]) else 0)
        for i, v in enumerate(values)
        if not math.isnan(v)
    ]
    top = max([*finite, 1e-9])
    if unit_scale and top <= 1:
        top = 1.0
    if counts:
        top = max(4, math.ceil(top / 4) * 4)
    show: Callable[[Any], str] = _count if counts else _fmt
    plot_w, plot_h = _W - _PAD_L - 10, _H - _PAD_B - _PAD_T
    step = plot_w / max(len(values), 1)
    parts = [_axes(title, top, plot_w, plot_h, integer=counts)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = _PAD_L + i * step + step * 0.15
        h = 0 if math.isnan(value) else value / top * plot_h
        y = _PAD_T + plot_h - h
        color = _COLORS[i % len(_COLORS)]
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{_e(label)}: {show(value)}</title></rect>'
        )
        if errors and errors[i] and not math.isnan(errors[i]) and not math.isnan(value):
            cx = x + step * 0.35
            y1 = _PAD_T + plot_h - (value + errors[i]) / top * plot_h
            y2 = _PAD_T + plot_h - max(0.0, value - errors[i]) / top * plot_h
            parts.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="#222"/>'
            )
        parts.append(
            f'<text x="{x + step * 0.35:.1f}" y="{y - 4:.1f}" font-size="11" '
            f'text-anchor="middle">{show(value)}</text>'
            f'<text x="{x + step * 0.35:.1f}" y="{_H - _PAD_B + 16}" font-size="11" '
            f'text-anchor="middle">{_e(_short(label))}</text>'
        )
    return _svg(parts)


def _histogram(title: str, series: dict[str, list[float]], bins: int = 20) -> str:
    """Overlaid histograms (one colour per series) as SVG."""
    values = [v for vs in series.values() for v in vs]
    if not values:
        return _svg([_axes(title + " (no data)", 1, _W - _PAD_L - 10, _H - _PAD_B - _PAD_T)])
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = {
        name: [
            sum(1 for v in vs if min(int((v - low) / width), bins - 1) == b) for b in range(bins)
        ]
        for name, vs in series.items()
    }
    # A multiple of 4 keeps the quarter gridlines on whole counts.
    top = max(4, math.ceil(max(max(c) for c in counts.values()) / 4) * 4)
    plot_w, plot_h = _W - _PAD_L - 10, _H - _PAD_B - _PAD_T
    step = plot_w / bins
    parts = [_axes(title, top, plot_w, plot_h, integer=True)]
    for s, (name, cs) in enumerate(counts.items()):
        color = _COLORS[s % len(_COLORS)]
        for b, count in enumerate(cs):
            h = count / top * plot_h
            parts.append(
                f'<rect x="{_PAD_L + b * step:.1f}" y="{_PAD_T + plot_h - h:.1f}" '
                f'width="{step:.1f}" height="{h:.1f}" fill="{color}" fill-opacity="0.55">'
                f"<title>{_e(name)}: {count} in {low + b * width:.4g}-{low + (b + 1) * width:.4g}s"
                "</title></rect>"
            )
        # Legend: one row under the axis, so it never covers the bars.
        slot = (_W - _PAD_L) / max(len(counts), 1)
        parts.append(
            f'<text x="{_PAD_L + s * slot:.1f}" y="{_H - _PAD_B + 32}" font-size="11" '
            f'fill="{color}">■ {_e(_short(name, int(slot / 7)))}</text>'
        )
    for frac, anchor in ((0, "start"), (0.5, "middle"), (1, "end")):
        parts.append(
            f'<text x="{_PAD_L + frac * plot_w:.1f}" y="{_H - _PAD_B + 16}" font-size="11" '
            f'text-anchor="{anchor}">{low + frac * (high - low):.3g}s</text>'
        )
    return _svg(parts)


def _axes(title: str, top: float, plot_w: float, plot_h: float, integer: bool = False) -> str:
    ticks = []
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = _PAD_T + plot_h - frac * plot_h
        value = top * frac
        text = f"{value:.0f}" if integer else f"{value:.3g}"
        ticks.append(
            f'<line x1="{_PAD_L}" x2="{_PAD_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{text}</text>'
        )
    return (
        f'<text x="{_W / 2}" y="{_H - 8}" font-size="13" text-anchor="middle" '
        f'font-weight="bold">{_e(title)}</text>' + "".join(ticks)
    )


def _svg(parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif">' + "".join(parts) + "</svg>"
    )


def _short(text: str, size: int = 28) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _main_metric(log: EvalLog) -> tuple[str, float, float]:
    metrics = (log.summary or {}).get("metrics") or {}
    for scorer, values in metrics.items():
        for name, value in values.items():
            if name != "stderr":
                return f"{scorer}/{name}", _num(value), _num(values.get("stderr"))
    return "-", float("nan"), float("nan")


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _summary_table(logs: Sequence[EvalLog]) -> str:
    head = (
        "<tr><th>task</th><th>model</th><th>status</th><th>metrics</th><th>samples</th>"
        "<th>errors</th><th>tokens</th><th>seconds</th><th>journal</th></tr>"
    )
    rows = []
    for log in logs:
        s = log.summary or {}
        metrics = "<br>".join(
            f"{_e(scorer)}/{_e(name)}: {_fmt(value)}"
            + (f" ± {_fmt(values.get('stderr'))}" if "stderr" in values else "")
            for scorer, values in (s.get("metrics") or {}).items()
            for name, value in values.items()
            if name != "stderr"
        )
        rows.append(
            f"<tr><td>{_e(log.task)}</td><td>{_e(log.model)}</td>"
            f"<td>{_e(s.get('status', 'unfinished'))}</td><td>{metrics or '-'}</td>"
            f"<td>{len(log.rows)}</td><td>{sum(1 for r in log.rows if r['error'])}</td>"
            f"<td>{sum(r['total_tokens'] or 0 for r in log.rows):,}</td>"
            f"<td>{_fmt(s.get('seconds'))}</td><td><code>{_e(log.path.name)}</code></td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _errors_table(logs: Sequence[EvalLog]) -> str:
    counts: dict[tuple[str, str], int] = {}
    for log in logs:
        for row in log.rows:
            if row["error"]:
                kind = row["error"].split(":", 1)[0]
                counts[(_label(log), kind)] = counts.get((_label(log), kind), 0) + 1
    if not counts:
        return "<p>No sample errors.</p>"
    body = "".join(
        f"<tr><td>{_e(run)}</td><td>{_e(kind)}</td><td>{n}</td></tr>"
        for (run, kind), n in sorted(counts.items())
    )
    return f"<table><tr><th>run</th><th>error</th><th>samples</th></tr>{body}</table>"


def _samples_table(log: EvalLog, limit: int = 50) -> str:
    rows = []
    for row in log.rows[:limit]:
        scores = ", ".join(
            f"{k[6:]}={v}"
            for k, v in row.items()
            if k.startswith("score_") and not k.endswith("_num")
        )
        rows.append(
            f"<tr><td>{_e(row['id'])}</td><td>{_e(row['epoch'])}</td>"
            f"<td>{_e(_short(row['input'] or '', 120))}</td><td>{_e(row['target'])}</td>"
            f"<td>{_e(_short(row['completion'] or '', 160))}</td><td>{_e(scores)}</td>"
            f"<td>{_e(row['error'] or '')}</td></tr>"
        )
    more = f"<p>First {limit} of {len(log.rows)} samples.</p>" if len(log.rows) > limit else ""
    return (
        f"<details><summary>{_e(_label(log))}: samples</summary><table><tr><th>id</th>"
        "<th>epoch</th><th>input</th><th>target</th><th>completion</th><th>scores</th>"
        f"<th>error</th></tr>{''.join(rows)}</table>{more}</details>"
    )


_CSS = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}
th{background:#f4f4f4}.plots{display:flex;flex-wrap:wrap;gap:16px}code{font-size:12px}"""


def build_report(logs: Sequence[EvalLog]) -> str:
    """The HTML report of `logs` as one string."""
    labels = [_label(log) for log in logs]
    main = [_main_metric(log) for log in logs]
    metric_names = sorted({m[0] for m in main})
    plots = [
        _bars(
            f"score ({', '.join(metric_names)})",
            labels,
            [m[1] for m in main],
            [m[2] for m in main],
            unit_scale=True,
        ),
        _histogram(
            "latency per sample (s)",
            {_label(log): [r["time"] for r in log.rows if r["time"] is not None] for log in logs},
        ),
        _bars(
            "tokens per model",
            labels,
            [float(sum(r["total_tokens"] or 0 for r in log.rows)) for log in logs],
            counts=True,
        ),
        _bars(
            "sample errors",
            labels,
            [float(sum(1 for r in log.rows if r["error"])) for log in logs],
            counts=True,
        ),
    ]
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>gauge eval report</title>"
        f"<style>{_CSS}</style></head><body><h1>gauge eval report</h1>"
        f"<p>{len(logs)} run(s), written {created}.</p>"
        f"<h2>Results</h2>{_summary_table(logs)}"
        f"<h2>Plots</h2><div class='plots'>{''.join(plots)}</div>"
        f"<h2>Errors</h2>{_errors_table(logs)}"
        f"<h2>Samples</h2>{''.join(_samples_table(log) for log in logs)}"
        "</body></html>"
    )
