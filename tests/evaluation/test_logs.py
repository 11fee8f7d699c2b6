"""read_logs: a folder of journals from real mock evals as rows and DataFrames."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

import gauge
from gauge import Task, eval_async, get_model
from gauge.dataset import Sample
from gauge.errors import MissingExtra
from gauge.evaluation.journal import JournalError
from gauge.evaluation.results import EvalResult
from gauge.scorer import includes, match


def numbers(n: int) -> list[Sample]:
    # Every third target is impossible: samples 0, 3, 6, ... score I.
    return [Sample(input=f"{i}", target=str(i) if i % 3 else "never", id=f"s{i}") for i in range(n)]


async def two_runs(log_dir: Path) -> list[EvalResult]:
    task = Task(numbers(6), scorer=[match(), includes()], name="nums")
    # The second model fails its first call outright: one sample error, kept in the journal.
    failing = get_model("mock/flaky", memoize=False, errors=["fatal"])
    return await eval_async(
        task, ["mock/echo", failing], log_dir=log_dir, display=False, max_errors=1
    )


async def test_a_folder_of_runs_is_one_row_per_sample_and_one_per_run(tmp_path: Path) -> None:
    results = await two_runs(tmp_path / "logs")
    logs = gauge.read_logs(tmp_path / "logs")
    assert len(logs) == 2 and logs.skipped == []
    assert {j.header["model"]["name"] for j in logs} == {"mock/echo", "mock/flaky"}

    samples = logs.to_pandas()
    assert len(samples) == 12
    by_model = samples.groupby("model")
    assert by_model["score_match_num"].mean()["mock/echo"] == pytest.approx(4 / 6)
    echo = samples[samples.model == "mock/echo"].set_index("id")
    assert echo.loc["s1", "score_match"] == "C" and echo.loc["s3", "score_match"] == "I"
    assert echo.loc["s1", "completion"] == "1" and echo.loc["s1", "task"] == "nums"
    assert (echo.input_tokens == 1).all() and (echo.total_tokens == 2).all()
    assert (echo.time > 0).all() and (echo.epoch == 1).all()
    assert echo.error.isna().all()
    flaky = samples[samples.model == "mock/flaky"]
    [error] = flaky.error.dropna().tolist()
    assert error == "MockFatalError: mock fatal error (injected)"
    assert flaky.completion.isna().sum() == 1 and flaky.total_tokens.isna().sum() == 1
    run_ids = {Path(r.journal).stem for r in results}
    assert set(samples.run_id) == run_ids
    assert set(samples.log) == {r.journal for r in results}

    runs = logs.runs_df().set_index("model")
    assert runs.loc["mock/echo", "status"] == "success"
    assert runs.loc["mock/echo", "match/accuracy"] == pytest.approx(4 / 6)
    assert runs.loc["mock/echo", "samples"] == 6 and runs.loc["mock/echo", "errors"] == 0
    assert runs.loc["mock/echo", "tokens"] == 12 and runs.loc["mock/echo", "schema_version"] == 1
    assert runs.loc["mock/flaky", "errors"] == 1 and runs.loc["mock/flaky", "completed"] == 5
    assert runs.loc["mock/echo", "provider"] == "mock" and runs.loc["mock/echo", "resumes"] == 0
    assert set(runs.run_id) == run_ids


async def test_rows_without_pandas_and_a_clear_error_for_dataframes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await two_runs(tmp_path)
    logs = gauge.read_logs(tmp_path)
    rows = logs.sample_rows()
    assert len(rows) == 12 and {r["epoch"] for r in rows} == {1}
    assert sorted(r["score_includes_num"] for r in rows if r["model"] == "mock/echo") == [
        0.0,
        0.0,
        1.0,
        1.0,
        1.0,
        1.0,
    ]
    assert [r["status"] for r in logs.run_rows()] == ["success", "success"]
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    with pytest.raises(MissingExtra, match=r"pip install 'gauge\[pandas\]'"):
        logs.samples_df()
    with pytest.raises(MissingExtra, match=r"pip install 'gauge\[pandas\]'"):
        logs.runs_df()


async def test_files_folders_and_what_is_not_a_journal(tmp_path: Path) -> None:
    [result] = await eval_async(
        Task(numbers(3), scorer=match(), name="a"),
        "mock/echo",
        log_dir=tmp_path / "logs" / "a",
        display=False,
    )
    dataset = tmp_path / "logs" / "data.jsonl"
    dataset.write_text('{"input": "1", "target": "1"}\n')
    logs = gauge.read_logs(tmp_path / "logs")  # searched recursively
    assert [str(j.path) for j in logs] == [result.journal] and logs.skipped == [dataset]
    assert len(gauge.read_logs(result.journal, result.journal)) == 2
    with pytest.raises(JournalError, match="not a gauge journal"):
        gauge.read_logs(dataset)
    with pytest.raises(JournalError, match="missing not found; give a log folder"):
        gauge.read_logs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JournalError, match=r"no gauge journals in .*empty; run gauge eval"):
        gauge.read_logs(tmp_path / "empty")
    with pytest.raises(JournalError, match="read_logs needs a folder"):
        gauge.read_logs()


async def test_an_unfinished_run_an_old_journal_and_a_newer_one(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    [result] = await eval_async(
        Task(numbers(4), scorer=match(), name="t"), "mock/echo", log_dir=tmp_path, display=False
    )
    lines = [orjson.loads(x) for x in Path(result.journal).read_bytes().splitlines()]
    header, samples = lines[0], [x for x in lines if x["type"] == "sample"]

    other = tmp_path_factory.mktemp("other")

    def write(name: str, head: dict[str, object], body: list[dict[str, object]]) -> Path:
        # Outside tmp_path: these break the current schema on purpose (conftest checks it).
        path = other / name
        path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in [head, *body]))
        return path

    # Killed after 3 samples, before its summary (and before schema_version existed).
    old = {k: v for k, v in header.items() if k != "schema_version"} | {"version": 1}
    write("killed.jsonl", old, samples[:3])
    [row] = gauge.read_logs(other).run_rows()
    assert (row["status"], row["samples"], row["completed"], row["errors"]) == (
        "incomplete",
        4,
        3,
        0,
    )
    assert row["schema_version"] == 1 and row["tokens"] is None and row["cost"] is None

    newer = write("newer.jsonl", header | {"schema_version": 99}, samples)
    with pytest.warns(UserWarning, match="schema 99, newer than this gauge reads .1."):
        logs = gauge.read_logs(newer)
    assert len(logs.sample_rows()) == 4


async def test_cost_per_sample_and_per_run(tmp_path: Path) -> None:
    from gauge.model.cost import clear_overrides, load_overrides

    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  mock/priced:\n    input: 2\n    output: 8\n")
    load_overrides(prices)  # USD per 1M tokens: each 1-in, 1-out sample costs $0.00001
    try:
        await eval_async(
            Task(numbers(4), scorer=match()), "mock/priced", log_dir=tmp_path, display=False
        )
    finally:
        clear_overrides()
    logs = gauge.read_logs(tmp_path)
    assert logs.samples_df().cost.tolist() == pytest.approx([1e-5] * 4)
    [run] = logs.run_rows()
    assert run["cost"] == pytest.approx(4e-5) and run["tokens"] == 8
