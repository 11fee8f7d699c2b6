import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import GenerateConfig, Task, eval, eval_async, get_model
from gauge.dataset import Sample
from gauge.evaluation import header, progress
from gauge.evaluation.journal import read_journal
from gauge.evaluation.runner import EvalError
from gauge.scorer import includes, match, model_graded_qa
from gauge.solver import generate


def lines(path: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]


def numbers(n: int) -> list[Sample]:
    return [Sample(input=f"{i}", target=str(i) if i % 4 else "never", id=f"s{i}") for i in range(n)]


def fast(model: Any) -> Any:
    model.retry_policy.base_delay = 0.0
    return model


async def test_run_scores_and_journals_every_sample(tmp_path: Path) -> None:
    task = Task(numbers(20), scorer=[match(), includes()], name="nums", metadata={"k": 1})
    [result] = await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)
    # every 4th sample has an impossible target: 15 of 20 correct
    assert result.metrics["match"]["accuracy"] == 0.75
    assert result.metrics["match"]["stderr"] == pytest.approx(
        (0.75 * 0.25 / 19) ** 0.5 * (20 / 20) ** 0, rel=0.05
    )
    assert (result.samples, result.completed, result.errors, result.status) == (
        20,
        20,
        0,
        "success",
    )
    records = lines(result.journal)
    assert records[0]["type"] == "header" and records[-1]["type"] == "summary"
    header = records[0]
    assert header["task"]["name"] == "nums" and header["task"]["metadata"] == {"k": 1}
    assert header["model"]["name"] == "mock/echo" and header["versions"]["gauge"]
    samples = [r for r in records if r["type"] == "sample"]
    assert sorted(r["id"] for r in samples) == sorted(f"s{i}" for i in range(20))
    first = next(r for r in samples if r["id"] == "s1")
    assert first["input"] == [{"role": "user", "content": "1"}]
    assert first["output"]["completion"] == "1"
    assert first["output"]["model_output"]["choices"][0]["message"]["content"] == "1"
    assert first["scores"]["match"] == {"value": "C", "answer": "1"}
    assert first["usage"] == {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
    assert first["retries"] == 0 and first["cache"] is None and first["error"] is None
    assert records[-1]["metrics"]["match"]["accuracy"] == 0.75
    assert result.tokens == 40


async def test_retries_and_rate_limits_are_counted_per_sample(tmp_path: Path) -> None:
    model = fast(
        get_model("mock/r", memoize=False, errors=["rate_limit", "transient"], retry_after=0)
    )
    [result] = await eval_async(
        Task(numbers(1), scorer=match()), model, log_dir=tmp_path, display=False
    )
    sample = lines(result.journal)[1]
    assert sample["retries"] == 2 and sample["error"] is None
    # the run's instrumentation is removed afterwards
    assert "classify_error" not in vars(model.api)


async def test_max_errors_stops_and_keeps_journal(tmp_path: Path) -> None:
    model = get_model("mock/f", memoize=False, error_rate=1.0, error="fatal")
    with pytest.raises(EvalError, match=r"more than --max-errors 2 .*MockFatalError.*--resume"):
        await eval_async(
            Task(numbers(10), scorer=match()),
            model,
            log_dir=tmp_path,
            max_errors=2,
            max_connections=1,
            display=False,
        )
    [path] = tmp_path.glob("*.jsonl")
    records = lines(str(path))
    errors = [r for r in records if r["type"] == "sample"]
    assert len(errors) == 3 and all(r["error"]["type"] == "MockFatalError" for r in errors)
    assert records[-1]["type"] == "summary" and records[-1]["status"] == "error"


async def test_errors_within_budget_are_recorded_not_scored(tmp_path: Path) -> None:
    model = get_model("mock/e", memoize=False, errors=["fatal"])
    [result] = await eval_async(
        Task(numbers(8), scorer=match()),
        model,
        log_dir=tmp_path,
        max_errors=1,
        max_connections=1,
        display=False,
    )
    assert (result.completed, result.errors, result.status) == (7, 1, "success")
    # s0 failed (not scored); of s1..s7 only s4 has the impossible target
    assert result.metrics["match"]["accuracy"] == pytest.approx(6 / 7)


async def test_epochs_and_reducer(tmp_path: Path) -> None:
    calls = {"n": 0}

    def reply(*_: Any) -> str:
        calls["n"] += 1
        return "yes" if calls["n"] % 3 == 1 else "no"  # calls 1 and 4 right: one per sample?

    model = get_model("mock/ep", memoize=False, outputs=reply)
    samples = [Sample(input="q", target="yes", id=1)]
    [r_mean] = await eval_async(
        Task(samples, scorer=match(), epochs=3), model, log_dir=tmp_path, display=False
    )
    assert r_mean.metrics["match"]["accuracy"] == pytest.approx(1 / 3)
    assert r_mean.samples == 3
    calls["n"] = 0
    [r_max] = await eval_async(
        Task(samples, scorer=match(), epochs=3, epoch_reducer="max"),
        model,
        log_dir=tmp_path,
        display=False,
    )
    assert r_max.metrics["match"]["accuracy"] == 1.0
    epochs = sorted(r["epoch"] for r in lines(r_max.journal) if r["type"] == "sample")
    assert epochs == [1, 2, 3]


async def test_several_models_each_get_a_journal(tmp_path: Path) -> None:
    task = Task(numbers(4), scorer=match())
    results = await eval_async(task, ["mock/a", "mock/b"], log_dir=tmp_path, display=False)
    assert [r.model for r in results] == ["mock/a", "mock/b"]
    assert len({r.journal for r in results}) == 2


async def test_resume_runs_only_missing_pairs_once(tmp_path: Path) -> None:
    task = Task(numbers(30), scorer=match(), epochs=2)
    [first] = await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)
    path = Path(first.journal)
    kept = path.read_bytes().splitlines()[:21]  # header + 20 samples; drop the rest
    path.write_bytes(b"\n".join(kept) + b'\n{"type": "sample", "id": "s2')  # plus a torn line
    model = get_model("mock/echo", memoize=False)
    [resumed] = await eval_async(task, model, log_dir=tmp_path, display=False, resume=path)
    assert model.api.calls == 40
    records = (
        lines(str(path)) if False else [orjson.loads(x) for x in path.read_bytes().splitlines()]
    )
    pairs = [(r["id"], r["epoch"]) for r in records if r["type"] == "sample"]
    assert len(pairs) == 60 and len(set(pairs)) == 60
    assert resumed.completed == 60 and resumed.metrics == first.metrics
    assert read_journal(path).summary["completed"] == 60


async def test_grader_does_not_inherit_task_config(tmp_path: Path) -> None:
    seen: list[GenerateConfig] = []

    def grade(_input: Any, _tools: Any, _choice: Any, config: GenerateConfig) -> str:
        seen.append(config)
        return "GRADE: C"

    grader = get_model("mock/grader", memoize=False, outputs=grade)
    task = Task(
        numbers(2),
        solver=[generate()],
        scorer=model_graded_qa(model=grader, config=GenerateConfig(max_tokens=5)),
        config=GenerateConfig(temperature=1.5, seed=3),
    )
    [result] = await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)
    assert result.metrics["model_graded_qa"]["accuracy"] == 1.0
    assert [c.temperature for c in seen] == [None, None] and seen[0].max_tokens == 5


async def test_progress_display_renders_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    console = Console(record=True, width=200, force_terminal=True, file=io.StringIO())
    model = get_model("mock/slow", memoize=False, latency=0.06)
    await eval_async(
        Task(numbers(30), scorer=match()),
        model,
        log_dir=tmp_path,
        console=console,
        max_connections=5,
    )
    text = console.export_text()
    assert "30/30" in text and "rate-limited 0" in text and "tokens 60" in text


def test_sync_eval_and_package_does_not_shadow_it(tmp_path: Path) -> None:
    import gauge.evaluation.runner

    assert gauge.eval is gauge.evaluation.runner.eval

    [result] = eval(
        Task(numbers(4), scorer=match()), model="mock/echo", log_dir=tmp_path, display=False
    )
    assert result.completed == 4
    [again] = gauge.eval(
        Task(numbers(4), scorer=match()), model="mock/echo", log_dir=tmp_path, display=False
    )
    assert again.completed == 4


async def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    from gauge.evaluation.task import TaskError

    task = Task([Sample(input="a", id=1), Sample(input="b", id=1)], scorer=match())
    with pytest.raises(TaskError, match="sample id 1 appears twice"):
        await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)


async def test_response_cache_hits_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "cache"))
    task = Task(numbers(5), scorer=match())
    config = GenerateConfig(cache=True)
    [first] = await eval_async(task, "mock/c", config=config, log_dir=tmp_path, display=False)
    [second] = await eval_async(task, "mock/c", config=config, log_dir=tmp_path, display=False)
    caches = lambda r: [x["cache"] for x in lines(r.journal) if x["type"] == "sample"]  # noqa: E731
    assert caches(first) == ["miss"] * 5 and caches(second) == ["hit"] * 5
    assert second.metrics == first.metrics


async def test_resume_with_smaller_limit_counts_only_its_samples(tmp_path: Path) -> None:
    task = Task(numbers(20), scorer=match())
    [full] = await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)
    [part] = await eval_async(
        task, "mock/echo", log_dir=tmp_path, display=False, resume=full.journal, limit=8
    )
    assert (part.samples, part.completed) == (8, 8)
    # s0 and s4 of the first 8 have impossible targets
    assert part.metrics["match"]["accuracy"] == 0.75


async def test_a_failing_scorer_bug_is_a_sample_error_and_a_crash_marks_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gauge.evaluation import journal
    from gauge.scorer import Score, scorer

    async def broken(state: Any, target: list[str]) -> Score:
        raise RuntimeError("scorer bug")

    with pytest.raises(EvalError, match="RuntimeError: scorer bug"):
        await eval_async(
            Task(numbers(3), scorer=scorer(broken)), "mock/echo", log_dir=tmp_path, display=False
        )

    class Boom(Exception):
        pass

    original = journal.JournalWriter.write
    calls = {"n": 0}

    def failing_write(self: Any, record: dict[str, Any]) -> None:
        calls["n"] += 1
        if record["type"] == "sample" and calls["n"] > 3:
            raise Boom("disk full")
        original(self, record)

    monkeypatch.setattr(journal.JournalWriter, "write", failing_write)
    with pytest.raises(Boom):
        await eval_async(
            Task(numbers(10), scorer=match()),
            "mock/echo",
            log_dir=tmp_path / "b",
            display=False,
            max_connections=1,
        )
    [path] = (tmp_path / "b").glob("*.jsonl")
    summary = lines(str(path))[-1]
    assert summary["type"] == "summary" and summary["status"] == "error"
    assert summary["message"] == "Boom: disk full"


async def test_max_connections_bounds_samples_in_flight(tmp_path: Path) -> None:
    import asyncio

    live = {"now": 0, "peak": 0}

    async def reply(*_: Any) -> str:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        await asyncio.sleep(0.005)
        live["now"] -= 1
        return "ok"

    model = get_model("mock/conc", memoize=False, outputs=reply)
    await eval_async(
        Task(numbers(40), scorer=match()),
        model,
        log_dir=tmp_path,
        display=False,
        max_connections=3,
        config=GenerateConfig(max_connections=3),
    )
    assert live["peak"] == 3


async def test_sync_eval_inside_a_running_loop(tmp_path: Path) -> None:
    # As in Jupyter: the blocking call runs on gauge's background loop.
    [result] = eval(
        Task(numbers(4), scorer=match()), model="mock/echo", log_dir=tmp_path, display=False
    )
    assert result.completed == 4


async def test_models_run_side_by_side_and_one_failing_does_not_stop_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from rich.console import Console

    in_flight: dict[str, int] = {"a": 0, "bad": 0}
    overlap = {"seen": False}

    def tracked(name: str, fail: bool) -> Any:
        async def reply(*_: Any) -> str:
            in_flight[name] += 1
            overlap["seen"] |= all(in_flight.values())
            await asyncio.sleep(0.02)  # 40 samples / 2 connections: ~0.4 s, long enough to draw
            in_flight[name] -= 1
            if fail:
                raise RuntimeError("model down")
            return "ok"

        return reply

    good = get_model("mock/a", memoize=False, outputs=tracked("a", False))
    bad = get_model("mock/bad", memoize=False, outputs=tracked("bad", True))
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    console = Console(record=True, width=200, force_terminal=True, file=io.StringIO())
    with pytest.raises(EvalError, match=r"^mock/bad on nums: 3 sample error\(s\)") as info:
        await eval_async(
            Task(numbers(40), scorer=match(), name="nums"),
            [good, bad],
            log_dir=tmp_path,
            max_errors=2,
            max_connections=2,
            console=console,
        )
    assert overlap["seen"]  # both models had calls in flight at once
    by_model = {r.model: r for r in info.value.results}
    assert by_model["mock/a"].status == "success" and by_model["mock/a"].completed == 40
    assert by_model["mock/bad"].status == "error"
    text = console.export_text()
    assert "nums mock/a" in text and "nums mock/bad" in text and "40/40" in text


async def test_a_model_listed_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="model mock/a is listed twice"):
        await eval_async(Task(numbers(2)), ["mock/a", "mock/a"], log_dir=tmp_path, display=False)


async def test_tasks_given_as_task_function_or_file(tmp_path: Path) -> None:
    from gauge import task
    from gauge.evaluation.task import TaskError

    @task
    def tiny() -> Task:
        return Task(numbers(3), scorer=match())

    (tmp_path / "t.py").write_text(
        "from gauge import Task, task\n@task\ndef filed():\n    return Task([{'input': 'a'}])\n"
    )
    results = await eval_async(
        [tiny, str(tmp_path / "t.py")], "mock/echo", log_dir=tmp_path, display=False
    )
    assert [r.task for r in results] == ["tiny", "filed"]
    with pytest.raises(TaskError, match="is not a task"):
        await eval_async([42], "mock/echo", log_dir=tmp_path, display=False)  # type: ignore[list-item]


async def test_package_versions_are_read_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    looked_up: list[str] = []
    real = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        looked_up.append(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    header._installed_versions.cache_clear()
    tasks = [Task(numbers(2), solver=[generate()], scorer=includes(), name=n) for n in "ab"]
    results = await eval_async(tasks, get_model("mock/m"), log_dir=str(tmp_path), display=False)
    header._installed_versions.cache_clear()
    headers = [lines(r.journal)[0] for r in results]
    assert [h["task"]["name"] for h in headers] == ["a", "b"]
    assert headers[0]["versions"] == headers[1]["versions"]
    assert looked_up == ["gauge", "pydantic", "aiohttp", "orjson", "rich", "openai"]
    for name in list(looked_up):  # the Version line, as importlib's own parse reads it
        assert headers[0]["versions"][name] == importlib.metadata.version(name)


@pytest.mark.parametrize("failure", ["transient", "rate_limit"])
async def test_a_sample_sleeping_after_a_transient_failure_lends_its_place(
    tmp_path: Path, failure: str
) -> None:
    import asyncio
    import time

    from gauge.model.providers.mock import MockRateLimitError

    calls: list[tuple[str, float, float]] = []
    failed = set()

    async def reply(messages: Any, *_: Any) -> str:
        text = messages[-1].text
        started = time.perf_counter()
        await asyncio.sleep(0.05)
        calls.append((text, started, time.perf_counter()))
        if text == "0" and text not in failed:
            failed.add(text)
            if failure == "transient":
                raise ConnectionError("reset by peer")
            raise MockRateLimitError("429", retry_after=0.3)
        return text

    model = get_model("mock/lend", memoize=False, outputs=reply)
    model.retry_policy.base_delay = 0.4  # jittered to 0.2-0.4 s
    [result] = await eval_async(
        Task(numbers(12), scorer=match()), model, log_dir=tmp_path, display=False, max_connections=2
    )
    assert result.completed == 12 and result.errors == 0

    def live(at: float) -> int:
        return sum(1 for _, start, end in calls if start <= at < end)

    # Never more than 2 samples send at once ...
    assert max(live(start) for _, start, _ in calls) == 2
    # ... and while sample 0 sleeps before its retry, two others send in its place
    # after a transient failure; after a rate limit it keeps its place (the
    # provider asked for less traffic), and the key's pause holds the other one.
    first, second = [(start, end) for text, start, end in calls if text == "0"]
    during = [start for _, start, _ in calls if first[1] <= start < second[0]]
    if failure == "transient":
        assert during and max(live(at) for at in during) == 2
    else:
        assert all(live(at) <= 1 for at in during)


async def test_max_samples_bounds_samples_in_flight_while_the_limit_adapts(tmp_path: Path) -> None:
    import asyncio

    live = {"now": 0, "peak": 0}

    async def reply(*_: Any) -> str:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        await asyncio.sleep(0.005)
        live["now"] -= 1
        return "ok"

    model = get_model("mock/samples", memoize=False, outputs=reply, max_connections=2)
    [result] = await eval_async(
        Task(numbers(60), scorer=match()), model, log_dir=tmp_path, display=False, max_samples=5
    )
    # Five samples send at once; the key's limit (unset: adaptive) grew from 2 to meet them.
    assert live["peak"] == 5
    stats = model.rate_stats()
    assert stats["adaptive"] is True and stats["concurrency"] >= 5
    header = lines(result.journal)[0]
    assert header["eval"]["samples_in_flight"] == 5
    assert header["pipeline"]["max_connections"] is None
