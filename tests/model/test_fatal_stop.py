"""Early stop on repeated identical fatal errors: per connection key, in the retry
stage, over real HTTP, and in the eval runner (stop early, resume runs the rest)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gauge.dataset import Sample
from gauge.evaluation.runner import EvalError, eval, eval_async
from gauge.evaluation.task import Task
from gauge.model.api import FATAL, TRANSIENT
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.mock import MockFatalError
from gauge.model.rate.stop import FATAL_STOP, STOP_SECONDS, FatalStop
from gauge.model.retry import RetryPolicy
from gauge.scorer import includes
from gauge.solver import generate
from gauge.testing import OpenAIServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def http_error(status: int = 401, message: str = "Incorrect API key provided") -> HTTPStatusError:
    return HTTPStatusError(status, message, {"error": {"message": message}})


def test_defaults_are_the_documented_ones() -> None:
    policy = RetryPolicy()
    assert (FATAL_STOP, STOP_SECONDS) == (3, 60.0)
    assert (policy.max_retries, policy.max_total_wait, policy.fatal_stop) == (5, 900.0, 3)


def test_identical_fatal_errors_stop_the_key_and_successes_reset_the_count() -> None:
    clock = Clock()
    guard = FatalStop("openai-api|http://h/v1|abc|m", clock)
    for _ in range(2):
        assert guard.failed(http_error(), FATAL, 3) is False
    guard.succeeded()  # a success in between: start again
    assert (guard.count, guard.error) == (0, None)
    guard.failed(http_error(), FATAL, 3)
    guard.failed(http_error(), FATAL, 3)
    guard.failed(http_error(), TRANSIENT, 3)  # a transient error neither counts nor resets
    assert guard.count == 2 and not guard.holds()
    guard.failed(http_error(), FATAL, 3)
    assert guard.count == 3 and guard.holds()


def test_a_different_status_or_message_starts_the_count_again() -> None:
    guard = FatalStop("k", Clock())
    guard.failed(http_error(401), FATAL, 3)
    guard.failed(http_error(401), FATAL, 3)
    guard.failed(http_error(404, "The model `x` does not exist"), FATAL, 3)
    guard.failed(http_error(401, "Incorrect API key provided: sk-2"), FATAL, 3)
    assert guard.count == 1 and not guard.holds()


def test_zero_turns_the_stop_off() -> None:
    guard = FatalStop("k", Clock())
    for _ in range(10):
        guard.failed(http_error(), FATAL, 0)
    assert guard.count == 10 and not guard.holds()


def test_a_stop_lapses_then_one_more_identical_error_stops_again() -> None:
    clock = Clock()
    guard = FatalStop("k", clock)
    for _ in range(3):
        guard.failed(http_error(), FATAL, 3)
    clock.now += STOP_SECONDS - 0.01
    assert guard.holds()
    clock.now += 0.02
    assert not guard.holds()  # the provider is tried again
    guard.failed(http_error(), FATAL, 3)
    assert guard.holds()


def test_replay_is_a_fresh_copy_of_the_same_typed_error_with_a_note() -> None:
    guard = FatalStop("openai-api|http://user:pw@h/v1|abc|m", Clock())
    original = http_error()
    original.add_note("earlier note")
    for _ in range(3):
        guard.failed(original, FATAL, 3)
    first, second = guard.replay(), guard.replay()
    assert first is not second and first is not original
    assert type(first) is HTTPStatusError and str(first) == "HTTP 401: Incorrect API key provided"
    assert first.status == 401 and first.body == original.body  # type: ignore[attr-defined]
    notes = first.__notes__
    assert len(notes) == 1 and "stopped after 3 identical fatal errors" in notes[0]
    assert "pw@" not in notes[0] and "http://h/v1" in notes[0]
    assert guard.failed(first, FATAL, 3) is True and guard.count == 3  # replays do not count


async def test_pipeline_stops_the_key_after_three_identical_fatal_errors() -> None:
    model = get_model("mock/fatal-stop", memoize=False, errors=["fatal"] * 10)
    calls = 0
    inner = model.api.generate

    async def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return await inner(*args)

    model.api.generate = counted  # type: ignore[method-assign]
    other = get_model("mock/fatal-stop", memoize=False)  # same connection key
    for _ in range(3):
        with pytest.raises(MockFatalError):
            await model.generate("x")
    assert calls == 3
    for m in (model, other):
        with pytest.raises(MockFatalError) as info:
            await m.generate("y")
        error = info.value
        assert str(error) == "mock fatal error (injected)"
        [attempt] = error.gauge_attempts  # type: ignore[attr-defined]
        assert attempt["kind"] == "fatal" and attempt["stopped"] is True
        assert any("stopped after 3 identical fatal errors" in n for n in error.__notes__)
    assert calls == 3  # neither reached the provider


async def test_the_count_is_per_connection_key_and_configurable() -> None:
    model = get_model("mock/fatal-a", memoize=False, errors=["fatal"] * 10)
    model.retry_policy.fatal_stop = 5
    for _ in range(4):
        with pytest.raises(MockFatalError) as info:
            await model.generate("x")
        assert "stopped" not in info.value.gauge_attempts[-1]  # type: ignore[attr-defined]
    # another key is unaffected
    assert (await get_model("mock/fatal-b", memoize=False).generate("ok")).completion == "ok"
    with pytest.raises(MockFatalError):
        await model.generate("x")  # the fifth reaches the provider and stops the key
    with pytest.raises(MockFatalError) as info:
        await model.generate("x")
    assert info.value.gauge_attempts[-1]["stopped"] is True  # type: ignore[attr-defined]


async def test_bad_key_over_http_stops_after_three_requests_reach_the_server() -> None:
    async with OpenAIServer() as server:
        message = "Incorrect API key provided: sk-bad. You can find your API key at ..."
        for _ in range(3):
            server.script(401, {"error": {"message": message, "type": "invalid_request_error"}})
        model = get_model("openai-api/mock/m", base_url=server.url, api_key="sk-bad", memoize=False)
        results = await asyncio.gather(
            *(model.generate(f"q{i}") for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, HTTPStatusError) and r.status == 401 for r in results)
        # The server would now answer 200: the next requests must never reach it.
        results = await asyncio.gather(
            *(model.generate(f"r{i}") for i in range(20)), return_exceptions=True
        )
        assert len(server.requests) == 3
        for r in results:
            assert isinstance(r, HTTPStatusError) and r.status == 401
            assert r.gauge_attempts[-1]["stopped"] is True  # type: ignore[attr-defined]
        await model.close()


def numbers(n: int) -> Task:
    samples = [Sample(input=f"n{i}", target=f"n{i}", id=i) for i in range(n)]
    return Task(samples, solver=[generate()], scorer=includes(), name="numbers")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_stops_early_records_the_rest_as_not_run_and_resume_runs_them(
    tmp_path: Path,
) -> None:
    # Three identical fatal errors, then the provider would work again (a fixed key).
    model: Model = get_model("mock/fatal-eval", memoize=False, errors=["fatal"] * 3)
    with pytest.raises(EvalError, match=r"stopped early .*MockFatalError.*--resume") as info:
        eval(numbers(20), model, log_dir=tmp_path, max_errors=100, max_connections=1, display=False)
    [result] = info.value.results
    assert (result.status, result.completed, result.errors) == ("error", 0, 4)
    [path] = tmp_path.glob("*.jsonl")
    lines = records(path)
    samples = [r for r in lines if r["type"] == "sample"]
    assert [r["id"] for r in samples] == [0, 1, 2, 3]
    assert samples[3]["error"]["attempts"][-1]["stopped"] is True
    [not_run] = [r for r in lines if r["type"] == "not_run"]
    assert not_run["samples"] == [[i, 1] for i in range(4, 20)]
    assert "stopped early" in not_run["cause"]
    # A new run (a new event loop: the stop is per loop) resumes every sample left.
    [resumed] = eval(numbers(20), model, resume=path, display=False, max_connections=1)
    assert (resumed.status, resumed.completed, resumed.errors) == ("success", 20, 0)


async def test_with_the_stop_off_max_errors_decides_and_the_rest_is_not_run(
    tmp_path: Path,
) -> None:
    model = get_model("mock/f", memoize=False, error_rate=1.0, error="fatal")
    model.retry_policy.fatal_stop = 0
    with pytest.raises(EvalError, match=r"5 sample error\(s\), more than --max-errors 4"):
        await eval_async(
            numbers(10), model, log_dir=tmp_path, max_errors=4, max_connections=1, display=False
        )
    [path] = tmp_path.glob("*.jsonl")
    lines = records(path)
    assert len([r for r in lines if r["type"] == "sample"]) == 5
    [not_run] = [r for r in lines if r["type"] == "not_run"]
    assert not_run["samples"] == [[i, 1] for i in range(5, 10)]


def test_errors_about_one_request_never_stop_the_key() -> None:
    # A content filter answers many prompts with the same 400; the next may pass.
    guard = FatalStop("k", Clock())
    flagged = "Invalid prompt: your prompt was flagged as potentially violating our usage policy"
    for _ in range(5):
        guard.failed(http_error(400, flagged), FATAL, 3)
    assert not guard.holds() and guard.count == 0
    guard.failed(http_error(401), FATAL, 3)
    guard.failed(http_error(401), FATAL, 3)
    guard.failed(http_error(422, "bad field"), FATAL, 3)  # the key answered: it works
    guard.failed(http_error(401), FATAL, 3)
    assert guard.count == 1 and not guard.holds()


async def test_streams_stop_the_key_too_and_share_the_count_with_generate() -> None:
    model = get_model("mock/fatal-stream", memoize=False, errors=["fatal"] * 10)
    calls = 0
    inner = model.api.stream

    def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return inner(*args)

    model.api.stream = counted  # type: ignore[method-assign]
    for _ in range(2):
        with pytest.raises(MockFatalError):
            _ = [d async for d in model.stream("x")]
    with pytest.raises(MockFatalError):
        await model.generate("x")  # the third identical error, by generate
    with pytest.raises(MockFatalError) as info:
        _ = [d async for d in model.stream("y")]
    assert calls == 2  # the stopped key's stream never reached the provider
    assert info.value.gauge_attempts[-1]["stopped"] is True  # type: ignore[attr-defined]


async def test_stream_retries_are_bounded_by_the_total_wait_too() -> None:
    model = get_model("mock/stream-wait", memoize=False, errors=["transient"] * 10)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    model.sleep = sleep
    model.retry_policy.base_delay = 1.0
    model.retry_policy.max_total_wait = 2.5  # 0.5-1 s, then 1-2 s, then 2-4 s: over
    with pytest.raises(Exception, match="transient") as info:
        _ = [d async for d in model.stream("x")]
    assert sum(slept) <= 2.5 and len(slept) == len(info.value.gauge_attempts) - 1  # type: ignore[attr-defined]
