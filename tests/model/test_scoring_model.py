"""Model.loglikelihood / loglikelihood_rolling / score: batching, order, cache, reliability."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gauge.errors import ConfigError, ModelError, ModelTimeout, UnsupportedFeature
from gauge.model.api import TRANSIENT, ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.model import Model
from gauge.model.output import ModelOutput
from gauge.model.providers.mock import MockAPI, MockFatalError, MockTransientError
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.tools import ToolChoice, ToolInfo


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    return path


def mock(**args: Any) -> Model:
    model = get_model("mock/scoring", memoize=False, **args)
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    model.sleep = no_sleep
    return model


def mock_api(model: Model) -> MockAPI:
    assert isinstance(model.api, MockAPI)
    return model.api


PAIRS = [(f"question {i}: the answer is {i}.", f" {i}" * (i % 3 + 1)) for i in range(7)]


async def test_loglikelihood_in_order_across_batches() -> None:
    model = mock(score_batch_size=3)
    results = await model.loglikelihood(PAIRS)
    # The mock's rule: -1 nat per continuation character; greedy when it occurs in the context.
    assert results == [(-float(len(cont)), cont.strip() in ctx) for ctx, cont in PAIRS]
    assert results[0] == (-2.0, True)
    assert results[2] == (-6.0, False)
    assert mock_api(model).score_batches == [3, 3, 1]


async def test_score_returns_full_results_and_accounts_usage() -> None:
    model = mock()
    results = await model.score([LoglikelihoodRequest("one two", " three")])
    assert results == [Loglikelihood(-6.0, False, 6)]
    # The mock reports one token per word of context + continuation.
    assert model.usage.input_tokens == 3


async def test_rolling_scores_whole_texts() -> None:
    model = mock(logprob_per_char=-0.5)
    assert await model.loglikelihood_rolling(["abcd", "ab"]) == [-2.0, -1.0]
    full = await model.score_rolling(["abcd"])
    assert full == [Loglikelihood(-2.0, False, 4)]


async def test_empty_input_makes_no_call() -> None:
    model = mock()
    assert await model.loglikelihood([]) == []
    assert await model.loglikelihood_rolling([]) == []
    assert mock_api(model).calls == 0


async def test_transient_failure_is_retried() -> None:
    model = mock(errors=["transient", "rate_limit"], score_batch_size=10)
    results = await model.loglikelihood(PAIRS[:2])
    assert [r[0] for r in results] == [-2.0, -4.0]
    assert mock_api(model).score_batches == [2, 2, 2]


async def test_fatal_failure_raises_with_history() -> None:
    model = mock(errors=["transient", "fatal"])
    with pytest.raises(MockFatalError) as info:
        await model.loglikelihood(PAIRS[:1])
    attempts = info.value.gauge_attempts  # type: ignore[attr-defined]
    assert [a["kind"] for a in attempts] == ["transient", "fatal"]


async def test_retries_are_bounded_by_max_retries() -> None:
    model = mock(errors=["transient"] * 3)
    with pytest.raises(MockTransientError):
        await model.loglikelihood(PAIRS[:1], config={"max_retries": 1})
    assert len(mock_api(model).score_batches) == 2


async def test_timeout_bounds_a_hanging_batch() -> None:
    model = mock(errors=["hang"])
    with pytest.raises(ModelTimeout, match=r"timeout=0\.2s"):
        await model.loglikelihood(PAIRS[:1], config=GenerateConfig(timeout=0.2))


async def test_attempt_timeout_cancels_and_retries() -> None:
    model = mock(errors=["hang"])
    results = await model.loglikelihood(PAIRS[:1], config={"attempt_timeout": 0.2})
    assert results == [(-2.0, True)]
    assert mock_api(model).score_batches == [1, 1]


async def test_rpm_budget_paces_batches_and_tokens_are_counted() -> None:
    model = mock(score_batch_size=1)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    model.sleep = sleep
    await model.loglikelihood(PAIRS[:5], config={"rpm": 120})  # 2 batches/s
    # Five concurrent batches: the first goes at once, the others 0.5 s apart.
    assert sorted(waits) == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=0.01)
    stats = model.rate_stats()
    assert stats["requests"] == 5 and stats["in_flight"] == 0
    # The mock's usage (words of context + continuation) reaches the key's counters.
    words = sum(len((c + x).split()) for c, x in PAIRS[:5])
    assert stats["tokens"] == words == model.usage.input_tokens


async def test_cache_answers_hits_and_sends_only_misses() -> None:
    model = mock(score_batch_size=4)
    first = await model.loglikelihood(PAIRS[:3], cache=True)
    assert mock_api(model).score_batches == [3]
    again = await model.loglikelihood(PAIRS, cache=True)
    # Three hits, four misses sent in one batch; results in input order.
    assert mock_api(model).score_batches == [3, 4]
    assert again[:3] == first
    assert again == [(-float(len(c)), c.strip() in x) for x, c in PAIRS]
    usage_before = model.usage.input_tokens
    await model.loglikelihood(PAIRS, cache=True)
    assert mock_api(model).score_batches == [3, 4]
    assert model.usage.input_tokens == usage_before  # hits are not usage


async def test_cache_key_includes_the_operation_and_the_model() -> None:
    model = mock()
    await model.loglikelihood([("", "abc")], cache=True)
    # The same text as a rolling request is a different operation: a miss.
    await model.loglikelihood_rolling(["abc"], cache=True)
    assert mock_api(model).score_batches == [1, 1]
    other = get_model("mock/other-model", memoize=False)
    await other.loglikelihood([("", "abc")], cache=True)
    assert mock_api(other).score_batches == [1]


async def test_cache_off_by_default_and_via_config() -> None:
    model = mock()
    await model.loglikelihood(PAIRS[:2])
    await model.loglikelihood(PAIRS[:2])
    assert mock_api(model).score_batches == [2, 2]
    await model.loglikelihood(PAIRS[:2], config={"cache": True})
    await model.loglikelihood(PAIRS[:2], config={"cache": True})
    assert mock_api(model).score_batches == [2, 2, 2]


async def test_bad_input_fails_before_anything_is_sent() -> None:
    model = mock()
    with pytest.raises(
        ConfigError, match="request 1 is str 'oops'; pass \\(context, continuation\\)"
    ):
        await model.loglikelihood([("a", "b"), "oops"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="request 0 has an empty continuation"):
        await model.loglikelihood([("a", "")])
    with pytest.raises(ConfigError, match="not a string"):
        await model.loglikelihood([("a", 3)])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="rolling text 0 is int 5; pass strings"):
        await model.loglikelihood_rolling([5])  # type: ignore[list-item]
    assert mock_api(model).calls == 0


async def test_max_tokens_is_not_sent_with_scoring_calls() -> None:
    seen: list[GenerateConfig] = []
    model = mock()
    api = mock_api(model)
    original = api.loglikelihood

    async def spy(
        requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        seen.append(config)
        return await original(requests, config)

    api.loglikelihood = spy  # type: ignore[method-assign]
    await model.loglikelihood([("a", "b")], config={"max_tokens": 50, "temperature": 0.5})
    assert seen[0].max_tokens is None and seen[0].temperature == 0.5


async def test_provider_without_scoring_says_so() -> None:
    class ChatOnly(ModelAPI):
        name: ClassVar[str] = "chatonly"

        async def generate(
            self,
            input: list[ChatMessage],
            tools: list[ToolInfo],
            tool_choice: ToolChoice,
            config: GenerateConfig,
        ) -> ModelOutput:
            return ModelOutput()

    model = Model(ChatOnly("m"))
    with pytest.raises(UnsupportedFeature, match="'chatonly' cannot score loglikelihoods"):
        await model.loglikelihood([("a", "b")])
    with pytest.raises(UnsupportedFeature, match="cannot score rolling"):
        await ChatOnly("m").loglikelihood_rolling(["a"], GenerateConfig())


class Flaky(ModelAPI):
    """Fails its first call with a connection error, then scores by length; tracks concurrency."""

    name: ClassVar[str] = "flaky"
    supports_loglikelihood: ClassVar[bool] = True

    def __init__(self, connections: int = 2, wrong_count: bool = False) -> None:
        super().__init__("m")
        self.connections = connections
        self.wrong_count = wrong_count
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        raise AssertionError("scoring must not call generate")

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        self.calls += 1
        first = self.calls == 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if first:
                raise ConnectionResetError("connection reset by peer")
            results = [Loglikelihood(-len(r.continuation) / 10, False) for r in requests]
            return results[1:] if self.wrong_count else results
        finally:
            self.in_flight -= 1

    def classify_error(self, ex: BaseException) -> RetryDecision:
        return TRANSIENT if isinstance(ex, ConnectionError) else super().classify_error(ex)

    def score_batch_size(self) -> int:
        return 2

    def max_connections(self) -> int:
        return self.connections

    def connection_key(self) -> str:
        return f"flaky|{id(self)}"


async def test_failing_then_succeeding_provider_and_connection_limit() -> None:
    api = Flaky(connections=2)
    model = Model(api)

    async def no_sleep(seconds: float) -> None:
        return None

    model.sleep = no_sleep
    pairs = [("ctx", "x" * n) for n in range(1, 11)]
    # A fixed max_connections (the adaptive limit may grow past the provider's default).
    results = await model.loglikelihood(pairs, config={"max_connections": 2})
    assert [r[0] for r in results] == pytest.approx([-n / 10 for n in range(1, 11)])
    assert api.calls == 6  # five batches of two, one retried
    assert api.peak == 2


async def test_provider_returning_the_wrong_count_is_an_error() -> None:
    api = Flaky(wrong_count=True)
    model = Model(api)

    async def no_sleep(seconds: float) -> None:
        return None

    model.sleep = no_sleep
    with pytest.raises(ModelError, match="returned 1 scores for 2 requests"):
        await model.loglikelihood([("a", "b"), ("c", "d")])


def test_sync_twins() -> None:
    sync = get_model("mock/sync-scoring", memoize=False).sync()
    assert sync.loglikelihood([("the answer is 4", " 4")]) == [(-2.0, True)]
    assert sync.loglikelihood_rolling(["abc"]) == [-3.0]
