"""Journals -> viewer data: every sample, model-call latency, unique labels, snippets."""

from pathlib import Path

import orjson

from gauge.evaluation.journal import read_journal
from gauge.testing.journals import write_run
from gauge.view.charts import charts, percentile
from gauge.view.data import HEAD, SNIPPET, latency, load_runs, runs_of, sample_row


def test_latency_is_the_model_call_not_the_sample_wall_time(tmp_path: Path) -> None:
    # A local model's first batch: its samples' wall time includes a 40 s load.
    path = write_run(tmp_path, "hf/tiny", 40, load_seconds=40.0, batch=8)
    journal = read_journal(path)
    lines = list(journal.samples.values())
    first = next(line for line in lines[:8] if not line["error"])
    assert first["time"] > 40
    assert latency(first) == first["output"]["model_output"]["time"] < 5
    (run,) = runs_of([journal])
    assert max(run.latencies) < 5  # the load is charged to no sample
    assert len(run.latencies) == sum(1 for line in lines if not line["error"])
    p50, p90 = percentile(run.latencies, 0.5), percentile(run.latencies, 0.9)
    assert f"p50 {p50:.3g}s · p90 {p90:.3g}s" in charts([run], [None])[2]


def test_a_cache_hit_has_no_latency() -> None:
    line = {"cache": "hit", "output": {"model_output": {"time": 1.5}}, "time": 0.001}
    assert latency(line) is None
    assert latency({"output": {"model_output": {"time": 1.5}}}) == 1.5
    assert latency({"output": None, "time": 3.0}) is None  # an error: no call finished


def test_every_sample_is_a_row_and_texts_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    long = "x" * (SNIPPET + 50) + "the question?"
    lines = [
        {"type": "header", "task": {"name": "t", "scorers": ["exact"]}, "model": {"name": "m/a"}},
        *(
            {"type": "sample", "id": i, "epoch": 1, "input": long, "target": ["a", "b"],
             "output": {"completion": "y"}, "scores": {"exact": {"value": 0.25}},
             "metadata": {"k": i}, "retries": 1}
            for i in range(120)
        ),
    ]  # fmt: skip
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    (run,) = load_runs([path])
    assert len(run.rows) == 120 and len(run.details) == 120
    row = run.rows[5]
    assert len(row["in"]) == SNIPPET and row["in"].endswith("xxthe question?")
    assert row["in"][HEAD : HEAD + 3] == " … "  # head and tail: the question stays searchable
    assert row["tg"] == "a\nb" and row["n"] == 0.25 and row["md"] == {"k": 5} and row["rt"] == 1
    assert run.details[5]["messages"] == []  # a plain string input has no message list
    assert run.log.summary is None  # unfinished: no summary, still viewable


def test_same_task_and_model_twice_get_distinct_labels(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_run(tmp_path / "a", "m/x", 3), write_run(tmp_path / "b", "m/x", 3)
    runs = load_runs([one, two])
    labels = [r.label for r in runs]
    assert labels[0] == "arith · m/x" and labels[1] == f"arith · m/x ({two.stem})"


def test_score_rows_take_the_declared_main_scorer() -> None:
    line = {"id": 1, "scores": {"b": {"value": "I"}, "a": {"value": "C"}}}
    assert sample_row(0, line, "a")["n"] == 1.0
    assert sample_row(0, line, "b")["n"] == 0.0
    assert sample_row(0, {"id": 2, "scores": {"a": {"value": "odd"}}}, "a")["n"] is None


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([0.0, 10.0], 0.9) == 9.0
