"""Charts stay readable with 20 runs: one row per run, labels apart, unknown cost said."""

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from gauge.testing.journals import write_run, write_runs
from gauge.view.charts import ROW, TOP, Bar, bar_chart, charts
from gauge.view.data import load_runs

SVG = "{http://www.w3.org/2000/svg}"
MODELS = [f"provider-{i % 4}/a-rather-long-model-name-{i}-instruct" for i in range(20)]


def test_twenty_runs_get_twenty_separate_labelled_rows(tmp_path: Path) -> None:
    runs = load_runs(write_runs(tmp_path, MODELS, 30))
    costs = [r["cost"] for r in (run.log.summary or {} for run in runs)]
    svgs = charts(runs, costs)
    assert len(svgs) == 5
    for svg in svgs:
        root = ET.fromstring(svg)
        assert int(root.get("height")) == TOP + 20 * ROW + 24  # grows one row per run
        labels = [t for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
        assert len(labels) == 20
        ys = [float(t.get("y")) for t in labels]
        assert all(b - a == ROW for a, b in itertools.pairwise(ys))  # never overlap
        full = [t.find(f"{SVG}title").text for t in labels]
        assert sorted(full) == sorted(MODELS)  # one task: the model names, whole in tooltips
        shown = [t.find(f"{SVG}title").tail for t in labels]
        assert all(len(s) <= 34 for s in shown) and shown[0].endswith("…")


def test_unknown_values_are_words_not_zero_bars() -> None:
    svg = bar_chart("cost", [Bar("a", 0.5, "$0.5000"), Bar("b", None, "unknown (no price)")])
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}rect")) == 1
    assert "unknown (no price)" in svg
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert widths == [260.0 * 0.5 / 0.5]  # 0.5 on a 0..0.5 axis fills the plot


def test_whisker_and_axis() -> None:
    svg = bar_chart("s", [Bar("a", 0.5, "0.500 ± 0.100", 0.4, 0.6)], top=1.0)
    lines = ET.fromstring(svg).findall(f"{SVG}line[@class='wh']")
    assert [float(lines[0].get(k)) for k in ("x1", "x2")] == [230 + 0.4 * 260, 230 + 0.6 * 260]
    ticks = [
        t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("text-anchor") == "middle"
    ]
    assert ticks == ["0", "0.25", "0.5", "0.75", "1"]


def test_cost_per_model_sums_tasks_and_stays_unknown_without_a_price(tmp_path: Path) -> None:
    paths = [
        write_run(tmp_path, "m/priced", 10, task="t1"),
        write_run(tmp_path, "m/priced", 10, task="t2"),
        write_run(tmp_path, "m/free", 10, task="t1", priced=False),
        write_run(tmp_path, "m/free", 10, task="t2"),
    ]
    runs = load_runs(paths)
    costs = [(run.log.summary or {}).get("cost") for run in runs]
    svgs = charts(runs, costs)
    assert len(svgs) == 6
    per_model = ET.fromstring(svgs[2])
    assert per_model.find(f"{SVG}text").text == "cost per model, all tasks (USD)"
    texts = [t.text for t in per_model.iter(f"{SVG}text")]
    priced = sum(c for run, c in zip(runs, costs, strict=True) if run.log.model == "m/priced")
    assert f"${priced:,.4f}" in texts
    assert "unknown (no price)" in texts  # m/free: one of its runs has no price
    labels = [
        t.find(f"{SVG}title").text
        for t in per_model.iter(f"{SVG}text")
        if t.get("text-anchor") == "end"
    ]
    assert labels == ["m/free", "m/priced"]
