"""Rate control is visible in an eval: live in the progress display, saved in the log."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from gauge import GenerateConfig, Task, eval_async, get_model
from gauge.dataset import Sample
from gauge.evaluation import progress
from gauge.scorer import match
from gauge.testing import OpenAIServer


def samples(n: int) -> list[Sample]:
    return [Sample(input=f"{i}", target=str(i), id=f"s{i}") for i in range(n)]


async def test_live_display_and_summary_show_key_stats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    console = Console(record=True, width=250, force_terminal=True, file=io.StringIO())
    model = get_model("mock/visible", memoize=False, latency=0.1, max_connections=4)
    [result] = await eval_async(
        Task(samples(100), scorer=match()), model, log_dir=tmp_path, console=console
    )
    text = console.export_text()
    # The key's rate control, under a label people read (never the internal key string).
    assert "mock/visible" in text and "mock||-|visible" not in text
    assert "in flight " in text and "rate-limited 0" in text and "tokens/min" in text
    summary = orjson.loads(Path(result.journal).read_bytes().splitlines()[-1])
    rate = summary["rate_control"]
    assert rate["key"] == "mock||-|visible" and rate["adaptive"] is True
    assert rate["requests"] == 100 and rate["tokens"] == 200 and rate["in_flight"] == 0
    # No --max-connections: the eval kept more samples in flight than the start of 4,
    # so the adaptive limit grew (the provider's default is a start, not a ceiling).
    assert rate["concurrency"] >= 32 and rate["peak_in_flight"] > 4


async def test_rejections_from_a_rate_limited_server_are_counted(tmp_path: Path) -> None:
    server = OpenAIServer(rate_limit=20, retry_after=0.2)
    async with server:
        model = get_model("openai-api/mock/m", base_url=server.url, memoize=False)
        [result] = await eval_async(
            Task(samples(30), scorer=match()),
            model,
            log_dir=tmp_path,
            display=False,
            config=GenerateConfig(max_retries=10),
        )
        await model.close()
    summary = orjson.loads(Path(result.journal).read_bytes().splitlines()[-1])
    assert result.completed == 30
    rate = summary["rate_control"]
    assert rate["rate_limit_hits"] == server.rejected > 0
    assert rate["concurrency"] < 32  # cut from the provider's start of 32


async def test_a_provider_that_queues_caps_the_growth_and_the_samples_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ollama (and in-process engines) run a fixed number of requests at once and
    # queue the rest: their max_connections_limit() is their start, so neither the
    # adaptive limit nor the eval's samples in flight grow past it.
    from gauge.model.providers.mock import MockAPI

    monkeypatch.setattr(MockAPI, "max_connections_limit", lambda self: 6)
    model = get_model("mock/queued", memoize=False, latency=0.02, max_connections=4)
    live = {"now": 0, "peak": 0}
    inner = model.api.generate

    async def counted(*args: object) -> object:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        try:
            return await inner(*args)  # type: ignore[arg-type]
        finally:
            live["now"] -= 1

    model.api.generate = counted  # type: ignore[method-assign]
    [result] = await eval_async(
        Task(samples(60), scorer=match()), model, log_dir=tmp_path, display=False
    )
    assert result.completed == 60
    assert model.rate_stats()["concurrency"] == 6 and live["peak"] == 6  # grew from 4


def test_ollama_does_not_grow_past_its_start() -> None:
    ollama = get_model("ollama/llama3.2", memoize=False)
    assert ollama.api.max_connections() == ollama.api.max_connections_limit() == 8
    assert (
        get_model(
            "openai-api/vllm/m", base_url="http://127.0.0.1:1/v1", api_key="x", memoize=False
        ).api.max_connections_limit()
        == 256
    )


async def test_the_live_display_says_why_a_key_slowed_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(progress, "REFRESH_HZ", 100)
    console = Console(record=True, width=250, force_terminal=True, file=io.StringIO())
    server = OpenAIServer(rate_limit=20, retry_after=0.3)
    async with server:
        model = get_model("openai-api/mock/m", base_url=server.url, memoize=False)
        [result] = await eval_async(
            Task(samples(40), scorer=match()),
            model,
            log_dir=tmp_path,
            console=console,
            config=GenerateConfig(max_retries=10),
        )
        await model.close()
    assert result.completed == 40 and server.rejected > 0
    text = console.export_text()
    assert "slowed: " in text, text[-2000:]
    assert "429 with Retry-After: paused" in text or "concurrency halved" in text
