"""Per-run charts as inline SVG: one horizontal bar per run, its label on its own row.

Horizontal bars keep every label whole and apart however many runs there are (a
vertical chart's labels overlap past a handful); the chart grows by one row per run.
A missing value (a model with no price, a run with no metric) reads "unknown" where
its bar would be, never as a zero bar.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gauge.view.data import RunView, main_metric

COLORS = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5"]
WIDTH = 640
LABEL_W = 230  # the label column; longer labels are cut, with the full one as a tooltip
VALUE_W = 150  # room right of the longest bar for its value
ROW = 22
TOP = 30
BOTTOM = 24


@dataclass
class Bar:
    """One run's row: its value, an optional range (whisker) and the text shown."""

    label: str
    value: float | None
    text: str
    low: float | None = None
    high: float | None = None
    color: str = COLORS[0]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str, size: int = 34) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _nice_top(top: float) -> float:
    if top <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(top))
    for factor in (1, 2, 2.5, 5, 10):
        if top <= factor * step:
            return factor * step
    return 10 * step


def bar_chart(title: str, bars: Sequence[Bar], top: float | None = None) -> str:
    """A horizontal bar chart: one row per bar, a shared 0..top axis with 4 ticks."""
    finite = [v for b in bars for v in (b.value, b.high) if v is not None and math.isfinite(v)]
    top = top if top is not None else _nice_top(max(finite, default=0.0))
    plot_w = WIDTH - LABEL_W - VALUE_W
    height = TOP + ROW * max(len(bars), 1) + BOTTOM
    parts = [f'<text x="4" y="18" class="ct">{_e(title)}</text>']
    for k in range(5):
        x = LABEL_W + plot_w * k / 4
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 4}" y2="{height - BOTTOM}" class="grid"/>'
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">{top * k / 4:.3g}</text>'
        )
    for i, bar in enumerate(bars):
        y = TOP + i * ROW
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end"><title>{_e(bar.label)}'
            f"</title>{_e(_short(bar.label))}</text>"
        )
        if bar.value is None:
            parts.append(f'<text x="{LABEL_W + 4}" y="{y + 15}" class="unk">{_e(bar.text)}</text>')
            continue
        w = max(0.0, min(bar.value / top, 1.0)) * plot_w
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" height="{ROW - 8}" '
            f'fill="{bar.color}"><title>{_e(bar.label)}: {_e(bar.text)}</title></rect>'
        )
        end = w
        if bar.low is not None and bar.high is not None:
            x1 = LABEL_W + max(0.0, min(bar.low / top, 1.0)) * plot_w
            x2 = LABEL_W + max(0.0, min(bar.high / top, 1.0)) * plot_w
            parts.append(
                f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y + ROW / 2}" y2="{y + ROW / 2}" '
                f'class="wh"/><line x1="{x2:.1f}" x2="{x2:.1f}" y1="{y + 6}" '
                f'y2="{y + ROW - 6}" class="wh"/>'
            )
            end = max(end, x2 - LABEL_W)
        parts.append(f'<text x="{LABEL_W + end + 5:.1f}" y="{y + 15}">{_e(bar.text)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}">' + "".join(parts) + "</svg>"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th quantile (0..1) of `values`, by linear interpolation (values not empty)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _colors(runs: Sequence[RunView]) -> list[str]:
    models = sorted({run.log.model for run in runs})  # one colour per model, across tasks
    return [COLORS[models.index(run.log.model) % len(COLORS)] for run in runs]


def _money(value: float) -> str:
    return f"${value:,.4f}" if value >= 0.0001 or value == 0 else f"${value:.2g}"


def charts(runs: Sequence[RunView], costs: Sequence[float | None]) -> list[str]:
    """The overview charts: score, cost, latency, tokens, errors (one row per run)."""
    colors = _colors(runs)
    one_task = len({run.log.task for run in runs}) == 1  # then the model says it all

    def bars(value: Callable[[int, RunView], Bar]) -> list[Bar]:
        out = [value(i, run) for i, run in enumerate(runs)]
        for bar, color, run in zip(out, colors, runs, strict=True):
            bar.color = color
            bar.label = run.log.model if one_task else run.label
        return out

    metrics = [main_metric(run) for run in runs]
    names = sorted({m[0] for m in metrics if m[0] != "-"}) or ["-"]

    def score(i: int, run: RunView) -> Bar:
        _, value, err = metrics[i]
        if value is None:
            return Bar(run.label, None, "no metric")
        text = f"{value:.3f}" + (f" ± {err:.3f}" if err is not None else "")
        low, high = (value - err, value + err) if err is not None else (None, None)
        return Bar(run.label, value, text, low, high)

    def cost(i: int, run: RunView) -> Bar:
        spent = costs[i]
        return Bar(run.label, spent, "unknown (no price)" if spent is None else _money(spent))

    def speed(i: int, run: RunView) -> Bar:
        seconds = run.latencies
        if not seconds:
            return Bar(run.label, None, "no model calls")
        p50, p90 = percentile(seconds, 0.5), percentile(seconds, 0.9)
        return Bar(run.label, p50, f"p50 {p50:.3g}s · p90 {p90:.3g}s", p50, p90)

    def tokens(_: int, run: RunView) -> Bar:
        total = sum(r["tok"] or 0 for r in run.rows)
        return Bar(run.label, float(total), f"{total:,}")

    def errors(_: int, run: RunView) -> Bar:
        count = sum(1 for r in run.rows if r["err"])
        return Bar(run.label, float(count), f"{count:,} of {len(run.rows):,}")

    score_bars = bars(score)
    fits = all((b.high or b.value or 0) <= 1 for b in score_bars)
    out = [
        bar_chart(f"score ({', '.join(names)})", score_bars, top=1.0 if fits else None),
        bar_chart("cost per run (USD)", bars(cost)),
        bar_chart("latency per model call (s): bar p50, whisker to p90", bars(speed)),
        bar_chart("tokens per run", bars(tokens)),
        bar_chart("sample errors", bars(errors)),
    ]
    if not one_task:  # several tasks: what each model cost over all of them
        out.insert(2, bar_chart("cost per model, all tasks (USD)", model_costs(runs, costs)))
    return out


def model_costs(runs: Sequence[RunView], costs: Sequence[float | None]) -> list[Bar]:
    """One bar per model: its runs' costs summed; unknown if any of them is unknown."""
    totals: dict[str, float | None] = {}
    for run, spent in zip(runs, costs, strict=True):
        model = run.log.model
        known = totals.get(model, 0.0)
        totals[model] = None if known is None or spent is None else known + spent
    colors = dict(zip(sorted(totals), COLORS * (len(totals) // len(COLORS) + 1), strict=False))
    return [
        Bar(model, spent, "unknown (no price)" if spent is None else _money(spent),
            color=colors[model])
        for model, spent in sorted(totals.items())
    ]  # fmt: skip
