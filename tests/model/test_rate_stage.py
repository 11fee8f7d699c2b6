"""The rate-control stage in the pipeline: pauses and budgets hold no slots, deadlines
still cancel attempts (custom providers included), limits learned over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from gauge.model import registry
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.model import Model
from gauge.model.output import ModelOutput
from gauge.model.providers.mock import MockRateLimitError
from gauge.model.rate import key_stats
from gauge.model.tools import ToolChoice, ToolInfo
from gauge.testing import OpenAIServer


def mock(**args: Any) -> Model:
    return get_model("mock/rate", memoize=False, **args)


async def test_retry_after_pauses_every_request_of_the_key_without_holding_slots() -> None:
    seen: list[tuple[float, int]] = []
    model = mock(errors=["rate_limit"], retry_after=4)
    other = mock()  # same connection key
    key = model.api.connection_key()
    assert other.api.connection_key() == key

    async def sleep(seconds: float) -> None:
        limiter = model.key().limiter
        seen.append((round(seconds, 3), limiter.in_flight))
        await asyncio.sleep(0)

    model.sleep = sleep
    other.sleep = sleep
    assert (await model.generate("first")).completion == "first"
    retry_wait = seen[0][0]
    assert 4.0 <= retry_wait <= 4.4 and seen[0][1] == 0  # backoff outside the slot
    # The pause was measured on the model's clock, which followed the fake sleep,
    # so it has passed for `model` ... but a fresh rate limit pauses `other` too.
    state = model.key()
    state.hold(3.0, state.clock(), "test")
    assert (await other.generate("second")).completion == "second"
    assert seen[-1][1] == 0 and 2.9 < seen[-1][0] <= 3.0
    assert state.counters.rate_limit_hits == 1 and state.limiter.limit == 32  # 64 halved


async def test_rpm_budget_paces_calls_and_shows_in_stats() -> None:
    model = mock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    model.sleep = sleep
    config = GenerateConfig(rpm=120)  # 2/s
    for i in range(5):
        await model.generate(f"n{i}", config=config)
    assert len(waits) == 4 and all(w == pytest.approx(0.5, abs=0.01) for w in waits)
    stats = model.rate_stats()
    assert stats["rpm"] == 120.0 and stats["requests"] == 5 and stats["in_flight"] == 0
    assert any(k["key"] == stats["key"] and k["requests"] == 5 for k in key_stats())


async def test_rate_limit_error_still_reaches_the_user_typed_with_history() -> None:
    model = mock(errors=["rate_limit"] * 5, retry_after=0.01)
    model.sleep = lambda s: asyncio.sleep(0)
    with pytest.raises(MockRateLimitError) as info:
        await model.generate("x", config=GenerateConfig(max_retries=2))
    assert [a["kind"] for a in info.value.gauge_attempts] == ["rate_limit"] * 3  # type: ignore[attr-defined]
    assert model.rate_stats()["rate_limit_hits"] == 3


class StuckAPI(ModelAPI):
    """A custom provider that never answers; records cancellations."""

    cancelled: ClassVar[int] = 0

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            StuckAPI.cancelled += 1
            raise
        raise AssertionError("unreachable")


@pytest.fixture
def stuck() -> Iterator[None]:
    registry.modelapi("stuck")(StuckAPI)
    StuckAPI.cancelled = 0
    yield
    registry.unregister("stuck")


@pytest.mark.usefixtures("stuck")
async def test_deadlines_cancel_custom_provider_attempts_and_free_slots() -> None:
    model = get_model("stuck/x", memoize=False)
    config = GenerateConfig(attempt_timeout=0.1, max_retries=2, timeout=5)
    model.sleep = lambda s: asyncio.sleep(0)
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"attempt_timeout=0\.1s"):
        await model.generate("x", config=config)
    assert 0.3 <= time.perf_counter() - started < 1.0
    assert StuckAPI.cancelled == 3
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"timeout=0\.2s"):
        await model.generate("x", config=GenerateConfig(timeout=0.2))
    assert time.perf_counter() - started < 0.6 and StuckAPI.cancelled == 4
    assert model.rate_stats()["in_flight"] == 0


async def test_limits_learned_from_real_headers_avoid_rejections() -> None:
    server = OpenAIServer(rate_limit=40, rate_headers=True, latency=0.01)
    async with server, get_model("openai-api/mock/m", base_url=server.url) as model:
        started = time.perf_counter()
        outputs = await asyncio.gather(*(model.generate(f"n{i}") for i in range(60)))
        wall = time.perf_counter() - started
        stats = model.rate_stats()
    assert [o.completion for o in outputs] == [f"n{i}" for i in range(60)]
    assert stats["rpm"] == pytest.approx(40 * 60 * 0.97)
    # The first wave (32, the provider default) fits in the first second's 40;
    # after that the learned budget paces requests, so nothing is rejected.
    assert server.rejected == 0 and stats["rate_limit_hits"] == 0
    assert 0.6 < wall < 2.0  # (60 - 40) / 40 s at the least; about 1 s expected


async def test_tokens_per_minute_budget_end_to_end() -> None:
    # 12000 tokens/min over a 1 s window = 200 tokens per second; each call uses
    # 20 (10 words in, 10 out) and reserves its estimate + max_tokens.
    prompt = " ".join(["word"] * 10)
    server = OpenAIServer(tokens_per_minute=12000, token_window=1.0, rate_headers=True)
    async with server, get_model("openai-api/mock/m", base_url=server.url) as model:
        config = GenerateConfig(max_tokens=12, tpm=12000)
        started = time.perf_counter()
        await asyncio.gather(*(model.generate(prompt, config=config) for _ in range(20)))
        wall = time.perf_counter() - started
        stats = model.rate_stats()
    assert stats["tokens"] == 400 and stats["tpm"] == pytest.approx(12000)
    assert server.rejected <= 1, server.rejected
    # 400 tokens, at most 97 % of 200 per second in any second: about 2 s.
    assert 1.5 < wall < 3.2


async def test_a_send_enters_the_token_window_when_it_takes_its_slot() -> None:
    # The provider's window counts a request from its arrival: one that waited
    # 0.3 s for the only slot must not leave our mirror 0.3 s before it leaves theirs.
    model = mock(latency=0.3)
    config = GenerateConfig(max_connections=1, tpm=6_000_000, max_tokens=5)
    await asyncio.gather(model.generate("a", config=config), model.generate("b", config=config))
    window = model.key().budgets.window
    assert window is not None
    first, second = (at for at, _ in window._entries)
    assert second - first == pytest.approx(0.3, abs=0.1)
