"""Endpoint pools: one model on several replicas, each its own connection key."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model, model_from_config
from gauge.model.rate.slots import OUT_FIRST, Slots
from gauge.testing import OpenAIServer


def dead_url() -> str:
    """A 127.0.0.1 URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_requests_spread_over_the_replicas_each_its_own_key() -> None:
    async with (
        OpenAIServer(latency=0.02, capacity=4) as a,
        OpenAIServer(latency=0.02, capacity=4) as b,
    ):
        model = get_model("openai-api/mock/m", base_url=f"{a.url},{b.url}", memoize=False)
        outputs = await asyncio.gather(*(model.generate(f"n{i}") for i in range(80)))
        stats = model.rate_stats()
        await model.close()
    assert [o.completion for o in outputs] == [f"n{i}" for i in range(80)]
    # Fewest in flight first: neither replica gets starved or flooded.
    assert a.count + b.count == 80 and min(a.count, b.count) >= 30
    keys = [r["key"] for r in stats["replicas"]]
    assert len(set(keys)) == 2 and a.url in keys[0] and b.url in keys[1]
    assert stats["requests"] == 80 and stats["key"].startswith("pool of 2")
    assert model.info()["base_url"] == f"{a.url},{b.url}"


async def test_two_replicas_of_a_busy_server_give_about_twice_the_throughput() -> None:
    async def wall(urls: str) -> float:
        model = get_model("openai-api/mock/m", base_url=urls, memoize=False)
        started = time.perf_counter()
        await asyncio.gather(*(model.generate(f"n{i}") for i in range(64)))
        took = time.perf_counter() - started
        await model.close()
        return took

    async with (
        OpenAIServer(latency=0.1, capacity=4) as a,
        OpenAIServer(latency=0.1, capacity=4) as b,
    ):
        one = await wall(a.url)
        two = await wall(f"{a.url},{b.url}")
    # 64 requests, 4 at a time for 0.1 s each: 1.6 s on one replica, 0.8 s on two.
    assert one >= 1.5 and two < one / 1.6


async def test_a_replica_that_refuses_is_left_out_and_the_attempt_moves_on_at_once() -> None:
    async with OpenAIServer() as live:
        model = get_model("openai-api/mock/m", base_url=f"{dead_url()},{live.url}", memoize=False)
        started = time.perf_counter()
        outputs = await asyncio.gather(*(model.generate(f"n{i}") for i in range(20)))
        took = time.perf_counter() - started
        stats = model.rate_stats()
        await model.close()
    assert [o.completion for o in outputs] == [f"n{i}" for i in range(20)]
    assert live.count == 20
    dead, alive = stats["replicas"]
    assert dead["failures"] >= 1 and alive["failures"] == 0
    assert took < 1.0  # no backoff sleep: the retry went to the other replica


def test_a_replica_left_out_comes_back_later_and_stays_after_a_success() -> None:
    slots = Slots(4, 16)
    slots.take_out(100.0)
    assert slots.down_until == 100.0 + OUT_FIRST
    slots.take_out(101.0)  # refused again when it came back: out twice as long
    assert slots.down_until == 101.0 + 2 * OUT_FIRST
    slots.grow(False)  # a success: back in, the next refusal starts again at 1 s
    assert slots.down_until == 0.0
    slots.take_out(200.0)
    assert slots.down_until == 200.0 + OUT_FIRST


async def test_when_every_replica_refuses_the_error_names_the_cause() -> None:
    model = get_model("openai-api/mock/m", base_url=f"{dead_url()},{dead_url()}", memoize=False)
    with pytest.raises(Exception, match="Cannot connect"):
        await model.generate("x", config=GenerateConfig(max_retries=2, timeout=10))
    await model.close()


async def test_streams_and_scores_go_through_the_pool_too() -> None:
    async with OpenAIServer() as a, OpenAIServer() as b:
        model = get_model("openai-api/mock/m", base_url=[a.url, b.url], memoize=False)
        texts = await asyncio.gather(*(_collect(model, f"w{i} x") for i in range(10)))
        await model.close()
    assert texts == [f"w{i} x" for i in range(10)]
    assert a.count + b.count == 10 and a.count > 0 and b.count > 0


async def _collect(model: object, prompt: str) -> str:
    return "".join([d async for d in model.stream(prompt)])  # type: ignore[attr-defined]


def test_a_model_config_file_may_list_the_replicas(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(
        "model: openai-api/local/m\n"
        "base_url:\n  - http://127.0.0.1:8001/v1\n  - http://127.0.0.1:8002/v1\n"
    )
    model = model_from_config(path)
    assert [r.base_url for r in model.replicas] == [
        "http://127.0.0.1:8001/v1",
        "http://127.0.0.1:8002/v1",
    ]
    assert len({r.connection_key() for r in model.replicas}) == 2


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://a/v1,,http://b/v1", "empty replica"),
        ("http://a/v1,http://a/v1", "replica twice"),
        ("http://a/v1,ftp://b/v1", "must start with http"),
    ],
)
def test_bad_replica_lists_are_one_line_errors(base_url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_model("openai-api/local/m", base_url=base_url, memoize=False)
