"""Streams go through the one pipeline: slots, budgets, headers, retries, usage, cache."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.model import Model
from gauge.model.providers.mock import MockAPI
from gauge.testing import OpenAIServer


def mock(**kwargs: Any) -> Model:
    return Model(MockAPI("echo", **kwargs))


async def collect(model: Model, prompt: str, **kwargs: Any) -> str:
    return "".join([delta async for delta in model.stream(prompt, **kwargs)])


async def test_a_stream_is_charged_counted_and_accounted_like_generate() -> None:
    model = mock()
    config = GenerateConfig(tpm=600_000)
    text = await collect(model, "one two three", config=config)
    assert text == "one two three"
    key = model.key()
    # The mock counts words: 3 in, 3 out. The key saw the usage, and so did the model.
    assert key.counters.tokens == 6 and key.counters.successes == 1
    assert model.usage.total_tokens == 6 and model.usage.output_tokens == 3
    stats = model.rate_stats()
    assert stats["requests"] == 1 and stats["in_flight"] == 0 and stats["tokens"] == 6


async def test_a_stream_holds_its_slot_until_it_ends() -> None:
    model = mock()
    config = GenerateConfig(max_connections=1)
    first = model.stream("alpha beta gamma", config=config)
    assert await anext(first) == "alpha"
    assert model.key().limiter.in_flight == 1
    second = asyncio.ensure_future(collect(model, "delta", config=config))
    await asyncio.sleep(0.05)
    assert not second.done()  # the only slot is the first stream's
    assert [d async for d in first] == [" beta", " gamma"]
    assert await asyncio.wait_for(second, 2) == "delta"
    assert model.key().limiter.in_flight == 0


async def test_a_stream_left_early_gives_its_slot_back() -> None:
    model = mock()
    config = GenerateConfig(max_connections=1)
    async with contextlib_aclosing(model.stream("a b c d", config=config)) as deltas:
        assert await anext(deltas) == "a"
    assert model.key().limiter.in_flight == 0
    assert await asyncio.wait_for(collect(model, "e f", config=config), 2) == "e f"


def contextlib_aclosing(gen: Any) -> Any:
    import contextlib

    return contextlib.aclosing(gen)


async def test_saturated_streams_grow_the_adaptive_limit() -> None:
    model = mock(max_connections=2, latency=0.005)
    await asyncio.gather(*(collect(model, f"w{i} x") for i in range(40)))
    limiter = model.key().limiter
    assert limiter.limit > 2 and limiter.peak > 2 and limiter.in_flight == 0


async def test_a_stream_learns_limits_from_its_response_headers() -> None:
    async with (
        OpenAIServer(rate_limit=40, rate_headers=True) as server,
        get_model("openai-api/mock/m", base_url=server.url) as model,
    ):
        assert await collect(model, "hello there") == "hello there"
        stats = model.rate_stats()
    assert stats["rpm"] == pytest.approx(40 * 60 * 0.97)


async def test_a_stream_through_a_real_server_is_charged_its_real_usage() -> None:
    async with (
        OpenAIServer() as server,
        get_model("openai-api/mock/m", base_url=server.url) as model,
    ):
        config = GenerateConfig(tpm=6_000_000)
        assert await collect(model, "one two three four", config=config) == "one two three four"
        key = model.key()
        assert key.counters.tokens == model.usage.total_tokens > 0


async def test_a_rate_limited_stream_waits_its_retry_after_and_is_counted() -> None:
    model = mock(errors=["rate_limit"], retry_after=2)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    model.sleep = sleep
    assert await collect(model, "ok then") == "ok then"
    assert waits and 2.0 <= waits[0] <= 2.2
    assert model.key().counters.rate_limit_hits == 1


async def test_streams_under_429_storms_hangs_and_resets_end_bounded() -> None:
    config = GenerateConfig(max_retries=4, attempt_timeout=1.0, timeout=20)
    async with OpenAIServer(
        seed=3, storm_rate=0.05, storm_seconds=0.3, hang_rate=0.1, reset_rate=0.1
    ) as server:
        model = get_model("openai-api/mock/m", base_url=server.url)
        started = time.monotonic()

        async def one(i: int) -> str:
            try:
                return await collect(model, f"w{i} x y", config=config)
            except Exception as ex:  # every failure names its cause
                return type(ex).__name__

        results = await asyncio.gather(*(one(i) for i in range(30)))
        wall = time.monotonic() - started
        stats = model.rate_stats()
        await model.close()
    done = sum(1 for i, r in enumerate(results) if r == f"w{i} x y")
    assert done >= 25, results
    assert wall < 20
    counts = server.faults.counts
    assert counts["hang"] + counts["reset"] + counts["storm"] > 0
    # Each fault was an attempt the key saw fail; each completed stream one success.
    assert stats["failures"] >= counts["hang"] + counts["reset"]
    assert stats["in_flight"] == 0


async def test_a_stream_stalled_after_its_first_delta_fails_at_attempt_timeout() -> None:
    async with OpenAIServer(seed=4, trickle_rate=1.0, trickle_delay=2.0) as server:
        model = get_model("openai-api/mock/m", base_url=server.url)
        config = GenerateConfig(max_retries=0, attempt_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(Exception, match="attempt_timeout"):
            await collect(model, "one two three", config=config)
        assert time.monotonic() - started < 5
        assert model.rate_stats()["in_flight"] == 0
        await model.close()


async def test_a_stream_that_fails_before_any_text_is_retried() -> None:
    model = mock(errors=["transient", "transient"])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    model.sleep = sleep
    assert await collect(model, "fine now") == "fine now"
    assert len(waits) == 2 and model.key().counters.failures == 2


async def test_the_stream_default_of_a_provider_without_streaming_goes_through_too() -> None:
    calls: list[list[ChatMessage]] = []

    async def answer(input: list[ChatMessage], *rest: Any) -> str:
        calls.append(input)
        return "whole reply"

    model = mock(outputs=answer)
    assert await collect(model, "q") == "whole reply"
    assert len(calls) == 1 and model.key().counters.successes == 1


async def test_a_cached_stream_is_replayed_without_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path))
    model = mock()
    first = await collect(model, "alpha beta gamma", cache=True)
    calls = model.api.calls
    again = [d async for d in model.stream("alpha beta gamma", cache=True)]
    assert first == "alpha beta gamma" and again == ["alpha beta gamma"]  # one delta
    assert model.api.calls == calls  # no request
    assert model.key().counters.requests == 1  # and nothing went through the key
    # A generate call with the same input is its own entry: it goes to the model.
    output = await model.generate("alpha beta gamma", cache=True)
    assert output.metadata == {"cache": "miss"} and model.api.calls == calls + 1


async def test_a_stream_left_early_or_failed_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path))
    model = mock()
    async with contextlib_aclosing(model.stream("one two three", cache=True)) as deltas:
        assert await anext(deltas) == "one"
    calls = model.api.calls
    assert await collect(model, "one two three", cache=True) == "one two three"
    assert model.api.calls == calls + 1  # the half-read stream was not stored
    assert await collect(model, "one two three", cache=True) == "one two three"
    assert model.api.calls == calls + 1  # the whole one was
