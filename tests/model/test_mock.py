"""The offline mock provider: outputs, usage, faults, determinism and streaming."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage, ChatMessageAssistant, ChatMessageUser
from gauge.model.model import Model
from gauge.model.output import ModelOutput, ModelUsage
from gauge.model.providers.mock import (
    MockAPI,
    MockFatalError,
    MockRateLimitError,
    MockTransientError,
)
from gauge.model.tools import ToolChoice, ToolInfo


def mock(**args: Any) -> Model:
    model = get_model("mock/test", memoize=False, **args)

    async def no_wait(seconds: float) -> None:
        return None

    model.sleep = no_wait
    return model


async def test_echo_of_last_user_message_with_word_usage() -> None:
    conversation: list[ChatMessage] = [
        ChatMessageUser(content="first question here"),
        ChatMessageAssistant(content="an answer"),
        ChatMessageUser(content="second one"),
    ]
    output = await mock().generate(conversation)
    assert output.completion == "second one"
    assert output.model == "mock/test"
    assert output.stop_reason == "stop"
    assert output.usage == ModelUsage(input_tokens=7, output_tokens=2, total_tokens=9)
    assert output.message.source == "generate"


async def test_echo_of_a_conversation_without_user_message_is_empty() -> None:
    output = await mock().generate([ChatMessageAssistant(content="x")])
    assert output.completion == ""


async def test_outputs_list_in_order_then_exhausted() -> None:
    fixed = ModelOutput.for_tool_call("mock/test", "add", {"a": 1})
    fixed.usage = ModelUsage(input_tokens=100, output_tokens=1, total_tokens=101)
    model = mock(outputs=["one", fixed, "three"])
    assert (await model.generate("a")).completion == "one"
    second = await model.generate("b")
    assert second.stop_reason == "tool_calls"
    assert second.usage is not None and second.usage.input_tokens == 100  # kept as given
    assert second is not fixed and fixed.time is None  # a copy is returned each time
    assert (await model.generate("c")).completion == "three"
    with pytest.raises(MockFatalError, match="mock outputs exhausted after 3 call"):
        await model.generate("d")


async def test_single_string_output_is_used_once() -> None:
    model = mock(outputs="only")
    assert (await model.generate("x")).completion == "only"
    with pytest.raises(MockFatalError, match="exhausted after 1 call"):
        await model.generate("x")


async def test_sync_callable_output_sees_the_request() -> None:
    seen: list[tuple[int, list[str], ToolChoice, float | None]] = []

    def answer(
        input: list[ChatMessage], tools: list[ToolInfo], choice: ToolChoice, config: GenerateConfig
    ) -> str:
        seen.append((len(input), [t.name for t in tools], choice, config.temperature))
        return input[-1].text.upper()

    model = mock(outputs=answer)
    output = await model.generate(
        "shout", tools=[ToolInfo(name="t")], config=GenerateConfig(temperature=0.3)
    )
    assert output.completion == "SHOUT"
    assert seen == [(1, ["t"], "auto", 0.3)]


async def test_async_callable_output_can_return_a_model_output() -> None:
    async def answer(input: list[ChatMessage], *rest: Any) -> ModelOutput:
        await asyncio.sleep(0)
        return ModelOutput.from_content("mock/test", f"async:{input[-1].text}")

    output = await mock(outputs=answer).generate("hi")
    assert output.completion == "async:hi"
    assert output.usage == ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)


async def test_callable_returning_something_else_is_an_error() -> None:
    with pytest.raises(MockFatalError, match="must be a str or ModelOutput"):
        await mock(outputs=lambda *a: 42).generate("hi")


async def test_fixed_latency() -> None:
    model = mock(latency=0.05)
    started = time.perf_counter()
    await model.generate("x")
    assert 0.05 <= time.perf_counter() - started < 0.5


async def test_latency_range_is_drawn_from_the_seeded_rng() -> None:
    model = mock(latency=[0.01, 0.03], seed=5)
    started = time.perf_counter()
    await asyncio.gather(*(model.generate("x") for _ in range(5)))
    assert 0.01 <= time.perf_counter() - started < 0.5
    assert mock(latency="0.01 0.02").api._latency == (0.01, 0.02)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"latency": -1}, "mock latency must be seconds or"),
        ({"latency": [0.2, 0.1]}, "mock latency must be seconds or"),
        ({"error_rate": 1.5}, "mock error_rate must be within 0..1"),
        ({"error": "explode"}, "mock error kind 'explode' is not one of"),
        ({"errors": ["fatal", "oops"]}, "mock error kind 'oops'"),
    ],
)
def test_bad_mock_arguments_are_config_errors(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mock(**args)


async def test_scripted_errors_fail_the_first_calls_in_order() -> None:
    api = MockAPI("x", errors=["rate_limit", "transient", "fatal"], retry_after=2)
    with pytest.raises(MockRateLimitError) as limited:
        await api.generate([ChatMessageUser(content="a")], [], "none", GenerateConfig())
    assert limited.value.retry_after == 2.0
    assert api.classify_error(limited.value).kind == "rate_limit"
    assert api.classify_error(limited.value).retry_after == 2.0
    with pytest.raises(MockTransientError) as transient:
        await api.generate([ChatMessageUser(content="a")], [], "none", GenerateConfig())
    assert api.classify_error(transient.value).kind == "transient"
    with pytest.raises(MockFatalError) as fatal:
        await api.generate([ChatMessageUser(content="a")], [], "none", GenerateConfig())
    assert api.classify_error(fatal.value).kind == "fatal"
    output = await api.generate([ChatMessageUser(content="a")], [], "none", GenerateConfig())
    assert output.completion == "a" and api.calls == 4


async def test_single_scripted_error_string() -> None:
    model = mock(errors="fatal")
    with pytest.raises(MockFatalError):
        await model.generate("x")
    assert (await model.generate("x")).completion == "x"


async def test_injected_hang_is_cut_by_the_pipeline() -> None:
    model = mock(errors=["hang"])
    with pytest.raises(TimeoutError):
        await model.generate("x", config=GenerateConfig(attempt_timeout=0.05, max_retries=0))


async def fault_pattern(seed: int, rate: float, kind: str = "transient") -> list[bool]:
    api = MockAPI("x", error_rate=rate, error=kind, seed=seed)
    pattern = []
    for _ in range(40):
        try:
            await api.generate([ChatMessageUser(content="a")], [], "none", GenerateConfig())
            pattern.append(False)
        except MockTransientError:
            pattern.append(True)
    return pattern


async def test_error_rate_is_seeded_and_deterministic() -> None:
    first = await fault_pattern(seed=1, rate=0.5)
    assert first == await fault_pattern(seed=1, rate=0.5)
    assert first != await fault_pattern(seed=2, rate=0.5)
    assert 5 <= sum(first) <= 35
    assert not any(await fault_pattern(seed=1, rate=0.0))
    assert all(await fault_pattern(seed=1, rate=1.0))


async def test_error_rate_through_the_pipeline_is_retried() -> None:
    model = mock(error_rate=0.3, seed=3)
    outputs = [await model.generate(f"p{i}") for i in range(20)]
    assert [o.completion for o in outputs] == [f"p{i}" for i in range(20)]
    assert model.api.calls > 20  # type: ignore[attr-defined]


async def test_max_tokens_truncates_words_and_sets_stop_reason() -> None:
    output = await mock().generate("one two three four five", config=GenerateConfig(max_tokens=3))
    assert output.completion == "one two three"
    assert output.stop_reason == "max_tokens"
    assert output.usage is not None and output.usage.output_tokens == 3
    short = await mock().generate("one two", config=GenerateConfig(max_tokens=3))
    assert short.completion == "one two" and short.stop_reason == "stop"


async def test_stop_seqs_cut_at_the_earliest_listed_sequence() -> None:
    output = await mock().generate(
        "alpha beta. gamma; delta", config=GenerateConfig(stop_seqs=[";", "."])
    )
    assert output.completion == "alpha beta"
    assert output.stop_reason == "stop"


async def test_num_choices() -> None:
    output = await mock().generate("same", config=GenerateConfig(num_choices=3))
    assert [c.message.text for c in output.choices] == ["same"] * 3
    assert output.usage is not None and output.usage.output_tokens == 3


async def test_max_connections_argument_is_the_default_limit() -> None:
    assert mock(max_connections=3).api.max_connections() == 3
    assert mock().api.max_connections() == 64


async def test_streaming_yields_word_deltas() -> None:
    model = mock(outputs=["streamed reply in words"])
    deltas = [d async for d in model.stream("x")]
    assert deltas == ["streamed", " reply", " in", " words"]
    assert "".join(deltas) == "streamed reply in words"


async def test_streaming_retries_before_the_first_delta() -> None:
    model = mock(errors=["transient"])
    assert [d async for d in model.stream("a b")] == ["a", " b"]
    assert model.api.calls == 2  # type: ignore[attr-defined]


async def test_streaming_fatal_error_is_raised_with_history() -> None:
    model = mock(errors=["fatal"])
    with pytest.raises(MockFatalError) as info:
        [d async for d in model.stream("a")]
    assert info.value.gauge_attempts[0]["kind"] == "fatal"  # type: ignore[attr-defined]


async def test_streaming_stall_is_cut_by_attempt_timeout() -> None:
    model = mock(errors=["hang"])
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        [d async for d in model.stream("a", config=GenerateConfig(attempt_timeout=0.1,
                                                                  max_retries=0))]  # fmt: skip
    assert time.perf_counter() - started < 0.6


def test_model_info_says_mock_streams() -> None:
    assert mock().info()["supports_streaming"] is True
