"""One value per pipeline setting: every entry point is a layer of GenerateConfig.

provider default < model (get_model config, -M, --model-config) < task < run
(eval keywords and config=, CLI flags) < per call. The samples in flight, the
connection limit the provider sees and the journal header all follow the one
resolved value.
"""

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import GenerateConfig, Task, eval_async, get_model
from gauge.dataset import Sample
from gauge.errors import ConfigError
from gauge.evaluation.settings import resolve_settings
from gauge.model.model import Model
from gauge.scorer import match


def numbers(n: int) -> list[Sample]:
    return [Sample(input=f"{i}", target=str(i), id=i) for i in range(n)]


def header(journal: str) -> dict[str, Any]:
    first: dict[str, Any] = orjson.loads(Path(journal).read_bytes().splitlines()[0])
    return first


class Observed:
    """What the provider saw: peak requests in flight and each call's max_connections."""

    def __init__(self, model: Model, latency: float = 0.01) -> None:
        self.now = 0
        self.peak = 0
        self.limits: set[int | None] = set()
        inner = model.api.generate

        async def observed(*args: Any) -> Any:
            self.limits.add(args[3].max_connections)
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(latency)
                return await inner(*args)
            finally:
                self.now -= 1

        model.api.generate = observed  # type: ignore[method-assign]


def mock(name: str, config: GenerateConfig | None = None) -> Model:
    return get_model(f"mock/{name}", config=config, memoize=False)


async def test_eval_keyword_beats_the_models_own_config(tmp_path: Path) -> None:
    # Before: 4 samples in flight, but every call told the key 8 and the header said 8.
    model = mock("kw", GenerateConfig(max_connections=8))
    seen = Observed(model)
    [result] = await eval_async(
        Task(numbers(30), scorer=match()),
        model,
        log_dir=tmp_path,
        display=False,
        max_connections=4,
    )
    assert result.completed == 30
    assert seen.limits == {4} and seen.peak == 4
    first = header(result.journal)
    assert first["resolved_config"]["max_connections"] == 4
    assert first["pipeline"]["max_connections"] == 4
    assert first["eval"]["samples_in_flight"] == 4
    assert first["config_layers"] == {
        "model": {"max_connections": 8},
        "task": {},
        "run": {"max_connections": 4},
    }


async def test_eval_keyword_beats_the_task_config(tmp_path: Path) -> None:
    # Before: 5 samples in flight, every call limited to the task's 2.
    model = mock("task")
    seen = Observed(model)
    task = Task(numbers(30), scorer=match(), config=GenerateConfig(max_connections=2))
    [result] = await eval_async(task, model, log_dir=tmp_path, display=False, max_connections=5)
    assert seen.limits == {5} and seen.peak == 5
    assert header(result.journal)["pipeline"]["max_connections"] == 5


async def test_samples_in_flight_follow_the_models_fixed_limit(tmp_path: Path) -> None:
    # Before: 30 samples in flight (the adaptive ceiling) behind a limit fixed at 3.
    model = mock("fixed", GenerateConfig(max_connections=3))
    started = {"now": 0, "peak": 0}

    async def solver(state: Any, generate: Any) -> Any:
        started["now"] += 1
        started["peak"] = max(started["peak"], started["now"])
        try:
            return await generate(state)
        finally:
            started["now"] -= 1

    seen = Observed(model)
    [result] = await eval_async(
        Task(numbers(30), solver=solver, scorer=match()), model, log_dir=tmp_path, display=False
    )
    assert seen.limits == {3} and seen.peak == 3
    assert started["peak"] == 3
    assert header(result.journal)["eval"]["samples_in_flight"] == 3
    assert header(result.journal)["pipeline"] == {
        "max_connections": 3,
        "max_retries": None,
        "timeout": None,
        "attempt_timeout": None,
        "rpm": None,
        "tpm": None,
        "cache": None,
    }


async def test_model_task_run_and_call_layers(tmp_path: Path) -> None:
    model = mock("layers", GenerateConfig(max_connections=9, timeout=30, max_retries=1))
    seen = Observed(model)

    async def solver(state: Any, generate: Any) -> Any:
        if state.sample_id == 0:  # a per-call config is the top layer, for that call only
            return await generate(state, config=GenerateConfig(max_connections=1))
        return await generate(state)

    task = Task(
        numbers(6),
        solver=solver,
        scorer=match(),
        config=GenerateConfig(max_connections=2, timeout=20),
    )
    [result] = await eval_async(
        task, model, log_dir=tmp_path, display=False, config=GenerateConfig(timeout=10)
    )
    pipeline = header(result.journal)["pipeline"]
    assert (pipeline["max_connections"], pipeline["timeout"], pipeline["max_retries"]) == (2, 10, 1)
    assert seen.limits == {1, 2}
    layers = resolve_settings(model.config, task.config, GenerateConfig(timeout=10))
    assert layers.resolved.timeout == 10 and layers.run_config.max_connections == 2
    assert layers.resolved.max_retries == 1 and layers.run_config.max_retries is None


async def test_a_keyword_overrides_the_same_field_of_config(tmp_path: Path) -> None:
    model = mock("both")
    seen = Observed(model)
    [result] = await eval_async(
        Task(numbers(12), scorer=match()),
        model,
        log_dir=tmp_path,
        display=False,
        config=GenerateConfig(max_connections=6, rpm=6000),
        max_connections=2,
        max_retries=0,
    )
    assert seen.limits == {2} and seen.peak == 2
    pipeline = header(result.journal)["pipeline"]
    assert (pipeline["max_connections"], pipeline["rpm"], pipeline["max_retries"]) == (2, 6000, 0)


async def test_num_concurrent_and_a_different_max_connections_in_one_call_is_an_error(
    tmp_path: Path,
) -> None:
    # The CLI refuses `-M num_concurrent=8 --max-connections 4`; so does Python.
    with pytest.raises(ConfigError, match=r"-M num_concurrent=8 conflicts with max_connections=4"):
        await eval_async(
            Task(numbers(2), scorer=match()),
            "mock/nc",
            model_args={"num_concurrent": 8},
            log_dir=tmp_path,
            display=False,
            max_connections=4,
        )
    assert not list(tmp_path.glob("*.jsonl"))
    # Alone, num_concurrent is the model's layer, and the run follows it.
    [result] = await eval_async(
        Task(numbers(9), scorer=match()),
        "mock/nc",
        model_args={"num_concurrent": 3},
        log_dir=tmp_path,
        display=False,
    )
    assert header(result.journal)["eval"]["samples_in_flight"] == 3


async def test_model_config_layer_for_models_built_by_name(tmp_path: Path) -> None:
    task = Task(numbers(4), scorer=match(), config=GenerateConfig(max_retries=2))
    [result] = await eval_async(
        task,
        "mock/mc",
        model_config={"max_connections": 2, "max_retries": 7, "timeout": 40},
        log_dir=tmp_path,
        display=False,
        timeout=50,
    )
    first = header(result.journal)
    assert first["config_layers"]["model"] == {
        "max_connections": 2,
        "max_retries": 7,
        "timeout": 40,
    }
    pipeline = first["pipeline"]
    assert (pipeline["max_connections"], pipeline["max_retries"], pipeline["timeout"]) == (2, 2, 50)


async def test_unknown_keyword_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="max_conections"):
        await eval_async(Task(numbers(1)), "mock/x", log_dir=tmp_path, max_conections=3)


async def test_the_resume_line_records_the_settings_it_ran_with(tmp_path: Path) -> None:
    model = mock("res", GenerateConfig(max_connections=8))
    [first] = await eval_async(
        Task(numbers(4), scorer=match()), model, log_dir=tmp_path, display=False, limit=2
    )
    [again] = await eval_async(
        Task(numbers(4), scorer=match()),
        model,
        resume=first.journal,
        display=False,
        max_connections=3,
    )
    assert again.completed == 4
    lines = [orjson.loads(x) for x in Path(first.journal).read_bytes().splitlines()]
    [resumed] = [x for x in lines if x["type"] == "resume"]
    assert resumed["pipeline"]["max_connections"] == 3
    assert resumed["config_layers"]["run"] == {"max_connections": 3}
