"""The viewer as one self-contained HTML file (no CDN, no fetch: it opens offline).

The overview (results table, charts, error messages) is plain HTML, there before any
script runs. Samples travel as gzip+base64 chunks in `<script type=
"application/octet-stream">` tags: per run, one chunk of table rows, and the full
transcripts in chunks of `DETAIL_CHUNK` samples. The script (assets/viewer.js)
decodes a run's rows when the samples tab first needs them and a transcript chunk
when one of its samples is opened, and draws only the table rows in view, so
10,000 samples x 5 models stay quick to open.
"""

from __future__ import annotations

import base64
import gzip
import html
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import orjson

from gauge.model.cost import usd
from gauge.view.charts import charts
from gauge.view.costs import run_cost, total_cost
from gauge.view.data import RunView, run_meta

DETAIL_CHUNK = 250  # transcripts per chunk: opening one decodes at most this many


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def _asset(name: str) -> str:
    return resources.files("gauge.view").joinpath("assets", name).read_text(encoding="utf-8")


def pack(value: Any) -> str:
    """`value` as gzip-compressed JSON in base64 (the browser's DecompressionStream reads it)."""
    # Level 3: a third of level 6's time for a sixth more bytes.
    return base64.b64encode(gzip.compress(orjson.dumps(value), compresslevel=3, mtime=0)).decode()


def _json_script(value: Any) -> str:
    # "</script" or "<!--" inside a script element would end or confuse it; "<" only
    # occurs inside JSON strings, where "\u003c" means the same.
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def _results_table(runs: Sequence[RunView], costs: Sequence[Decimal | None]) -> str:
    head = (
        "<tr><th>task</th><th>model</th><th>status</th><th>metrics</th><th>samples</th>"
        "<th>errors</th><th>tokens</th><th>cost</th><th>seconds</th><th>journal</th></tr>"
    )
    rows = []
    for index, (run, cost) in enumerate(zip(runs, costs, strict=True)):
        s = run.log.summary or {}
        metrics = "<br>".join(
            f"{_e(scorer)}/{_e(name)}: {_fmt(value)}"
            + (f" ± {_fmt(values.get('stderr'))}" if "stderr" in values else "")
            for scorer, values in (s.get("metrics") or {}).items()
            for name, value in values.items()
            if name != "stderr"
        )
        rows.append(
            f"<tr data-run='{index}'><td>{_e(run.log.task)}</td><td>{_e(run.log.model)}</td>"
            f"<td>{_e(s.get('status', 'unfinished'))}</td><td>{metrics or '-'}</td>"
            f"<td>{len(run.rows):,}</td><td>{sum(1 for r in run.rows if r['err']):,}</td>"
            f"<td>{sum(r['tok'] or 0 for r in run.rows):,}</td><td>{usd(cost)}</td>"
            f"<td>{_fmt(s.get('seconds'))}</td><td><code>{_e(run.log.path.name)}</code></td></tr>"
        )
    return f"<div class='wide'><table class='results'>{head}{''.join(rows)}</table></div>"


def _errors_table(runs: Sequence[RunView]) -> str:
    """Errors grouped by run, type and message: the message, not just the type."""
    groups: dict[tuple[int, str], list[Any]] = {}
    for index, run in enumerate(runs):
        for row in run.rows:
            if row["err"]:
                groups.setdefault((index, row["err"]), []).append(row["id"])
    if not groups:
        return "<p>No sample errors.</p>"
    body = "".join(
        f"<tr data-run='{index}' data-error='{_e(error.split(':', 1)[0])}'>"
        f"<td>{_e(runs[index].label)}</td><td>{_e(error)}</td><td>{len(ids):,}</td>"
        f"<td>{_e(', '.join(str(i) for i in ids[:5]))}{' …' if len(ids) > 5 else ''}</td></tr>"
        for (index, error), ids in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1])))
    )
    return (
        "<div class='wide'><table class='errors'><tr><th>run</th><th>error</th><th>samples</th>"
        f"<th>sample ids</th></tr>{body}</table></div>"
    )


def _chunks(runs: Sequence[RunView]) -> str:
    parts: list[tuple[str, list[dict[str, Any]]]] = []
    for r, run in enumerate(runs):
        parts.append((f"rows-{r}", run.rows))
        for c in range(0, len(run.details), DETAIL_CHUNK):
            parts.append((f"detail-{r}-{c // DETAIL_CHUNK}", run.details[c : c + DETAIL_CHUNK]))
    # zlib lets go of the GIL while it compresses: chunks pack in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        packed = pool.map(pack, [value for _, value in parts])
        return "\n".join(
            f'<script type="application/octet-stream" id="{name}">{data}</script>'
            for (name, _), data in zip(parts, packed, strict=True)
        )


_TABS = (
    "<nav><button data-tab='overview'>Overview</button>"
    "<button data-tab='samples'>Samples</button><button data-tab='compare'>Compare</button></nav>"
)


def build_page(runs: Sequence[RunView], live: str | None = None, notes: Sequence[str] = ()) -> str:
    """The viewer of `runs` as one HTML string.

    `live`: the served folder's version (the page then reloads when it changes);
    `notes`: lines shown above the results (journals left out, and why).
    """
    costs = [run_cost(run.log) for run in runs]
    meta = {
        "runs": [run_meta(run) for run in runs],
        "chunk": DETAIL_CHUNK,
        "live": live,
    }
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    total = total_cost([run.log for run in runs])
    svgs = charts(runs, [None if c is None else float(c) for c in costs])
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'><link rel='icon' href='data:,'>"
        f"<title>gauge view: {len(runs)} run(s)</title><style>{_asset('viewer.css')}</style>"
        f"</head><body><header><h1>gauge view</h1><span class='sub'>{len(runs)} run(s), "
        f"{sum(len(r.rows) for r in runs):,} samples, written {created}"
        f"{' · live' if live else ''}</span>{_TABS}</header>"
        "<section id='overview'>"
        f"{''.join(f'<p class=note>{_e(n)}</p>' for n in notes)}"
        f"<h2>Results</h2>{_results_table(runs, costs)}"
        f"<p>{_e(total)}; cache hits cost 0 (see docs/cost.md).</p>"
        f"<h2>Charts</h2><div class='charts'>{''.join(svgs)}</div>"
        f"<h2>Errors</h2>{_errors_table(runs)}</section>"
        "<section id='samples' hidden></section><section id='compare' hidden></section>"
        "<aside id='drawer' hidden></aside>"
        f'<script type="application/json" id="gauge-meta">{_json_script(meta)}</script>\n'
        f"{_chunks(runs)}\n<script>{_asset('viewer.js')}</script></body></html>"
    )
