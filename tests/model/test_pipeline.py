"""The generate pipeline: retries, deadlines, connection limits, config checks, message prep."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from gauge.errors import ConfigError, ModelTimeout, UnsupportedConfig
from gauge.model import registry
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.factory import get_model
from gauge.model.limits import ConnectionLimiter
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.model import Model, model_usage
from gauge.model.output import ModelOutput, ModelUsage
from gauge.model.providers.mock import MockFatalError, MockRateLimitError, MockTransientError
from gauge.model.retry import RetryPolicy
from gauge.model.tools import ToolCall, ToolChoice, ToolInfo


def record_sleeps(model: Model) -> list[float]:
    """Swap the model's backoff sleep for a fake clock; returns the requested waits."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    model.sleep = sleep
    return sleeps


def mock(**args: Any) -> Model:
    return get_model("mock/pipeline", memoize=False, **args)


# -- retries --------------------------------------------------------------------------


async def test_retries_are_bounded_and_history_is_attached_to_the_typed_error() -> None:
    model = mock(errors=["transient"] * 10)
    sleeps = record_sleeps(model)
    with pytest.raises(MockTransientError) as info:
        await model.generate("hi", config=GenerateConfig(max_retries=3))
    assert model.api.calls == 4  # type: ignore[attr-defined]
    history = info.value.gauge_attempts  # type: ignore[attr-defined]
    assert [a["attempt"] for a in history] == [1, 2, 3, 4]
    assert {a["kind"] for a in history} == {"transient"}
    assert history[0]["error"] == "MockTransientError: mock transient error (injected)"
    assert [a["wait"] is None for a in history] == [False, False, False, True]
    assert any("gave up after 4 attempts" in note for note in info.value.__notes__)
    # exponential backoff with jitter: 1 s, 2 s, 4 s, each scaled to 50-100 %
    assert len(sleeps) == 3
    for wait, full in zip(sleeps, (1, 2, 4), strict=True):
        assert full * 0.5 <= wait <= full


async def test_default_is_five_retries() -> None:
    model = mock(errors=["transient"] * 10)
    sleeps = record_sleeps(model)
    with pytest.raises(MockTransientError):
        await model.generate("hi")
    assert model.api.calls == 6  # type: ignore[attr-defined]
    assert len(sleeps) == 5


async def test_max_retries_zero_disables_retrying() -> None:
    model = mock(errors=["transient"])
    sleeps = record_sleeps(model)
    with pytest.raises(MockTransientError):
        await model.generate("hi", config=GenerateConfig(max_retries=0))
    assert sleeps == [] and model.api.calls == 1  # type: ignore[attr-defined]


async def test_transient_then_success() -> None:
    model = mock(errors=["transient", "rate_limit"])
    sleeps = record_sleeps(model)
    output = await model.generate("hello there")
    assert output.completion == "hello there"
    assert len(sleeps) == 2 and model.api.calls == 3  # type: ignore[attr-defined]


async def test_fatal_is_not_retried() -> None:
    model = mock(errors=["fatal", "transient"])
    sleeps = record_sleeps(model)
    with pytest.raises(MockFatalError) as info:
        await model.generate("hi")
    assert sleeps == [] and model.api.calls == 1  # type: ignore[attr-defined]
    assert info.value.gauge_attempts[0]["kind"] == "fatal"  # type: ignore[attr-defined]


async def test_retry_after_is_honoured() -> None:
    model = mock(errors=["rate_limit", "rate_limit"], retry_after=7)
    sleeps = record_sleeps(model)
    assert (await model.generate("ok")).completion == "ok"
    assert len(sleeps) == 2
    for wait in sleeps:
        assert 7 <= wait <= 7.7  # never shorter than asked, at most 10 % jitter


def test_retry_after_is_capped_and_policy_delays() -> None:
    policy = RetryPolicy(max_delay=2.0)
    assert 10 <= policy.delay(1, 10_000) <= 11  # capped at max_delay x 5
    assert 0 <= policy.delay(1, 0) <= 0
    assert 1 <= policy.delay(20, None) <= 2  # exponential, capped at max_delay


async def test_total_wait_budget_stops_retrying() -> None:
    model = mock(errors=["rate_limit"] * 5, retry_after=100)
    model.retry_policy.max_total_wait = 250
    sleeps = record_sleeps(model)
    with pytest.raises(MockRateLimitError):
        await model.generate("hi")
    assert len(sleeps) == 2  # a third 100 s wait would exceed 250 s


class LegacyRateLimit(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


class LegacyAPI(ModelAPI):
    """Recognises its own rate-limit error in `classify_error`."""

    failures: ClassVar[int] = 0

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if LegacyAPI.failures:
            LegacyAPI.failures -= 1
            raise LegacyRateLimit(retry_after=3)
        return ModelOutput.from_content(self.model_name, "done")

    def classify_error(self, ex: BaseException) -> RetryDecision:
        if isinstance(ex, LegacyRateLimit):
            return RetryDecision("rate_limit", ex.retry_after)
        return super().classify_error(ex)


class BrokenClassifierAPI(LegacyAPI):
    def classify_error(self, ex: BaseException) -> RetryDecision:
        raise RuntimeError("classifier bug")


class HangAPI(ModelAPI):
    """Hangs until cancelled and records the cancellation."""

    cancelled: ClassVar[int] = 0
    started: ClassVar[int] = 0

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        HangAPI.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            HangAPI.cancelled += 1
            raise
        raise AssertionError("unreachable")


class Recorder(ModelAPI):
    """Records what it receives; capabilities are set per test through subclasses."""

    honours: ClassVar[frozenset[str]] = frozenset({"temperature", "max_tokens"})
    seen: ClassVar[list[tuple[list[ChatMessage], list[ToolInfo], ToolChoice, GenerateConfig]]]
    seen = []

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        Recorder.seen.append((input, tools, tool_choice, config))
        output = ModelOutput.from_content(self.model_name, "recorded")
        output.usage = ModelUsage(input_tokens=5, output_tokens=2, total_tokens=7)
        return output


class CollapsingRecorder(Recorder):
    collapse_user_messages = True
    collapse_assistant_messages = True
    tools_required = True


class ReplayingRecorder(Recorder):
    has_reasoning_history = True
    tool_result_images = True


@pytest.fixture(autouse=True)
def providers() -> Iterator[None]:
    names = {
        "legacy": LegacyAPI,
        "brokenclf": BrokenClassifierAPI,
        "hang": HangAPI,
        "rec": Recorder,
        "collapse": CollapsingRecorder,
        "replay": ReplayingRecorder,
    }
    for name, cls in names.items():
        registry.modelapi(name)(cls)
    Recorder.seen = []
    HangAPI.cancelled = HangAPI.started = 0
    LegacyAPI.failures = 0
    yield
    for name in names:
        registry.unregister(name)


async def test_a_custom_rate_limit_classification_is_retried_after_its_wait() -> None:
    LegacyAPI.failures = 2
    model = get_model("legacy/x")
    sleeps = record_sleeps(model)
    assert (await model.generate("hi")).completion == "done"
    assert len(sleeps) == 2 and all(3 <= s <= 3.3 for s in sleeps)


async def test_a_broken_classifier_does_not_hide_the_error() -> None:
    LegacyAPI.failures = 1
    model = get_model("brokenclf/x")
    sleeps = record_sleeps(model)
    with pytest.raises(LegacyRateLimit):
        await model.generate("hi")
    assert sleeps == []


def test_default_classification() -> None:
    api = LegacyAPI("x")
    assert api.classify_error(TimeoutError()) == RetryDecision("transient")
    assert api.classify_error(ConnectionResetError()) == RetryDecision("transient")
    assert api.classify_error(ValueError()) == RetryDecision("fatal")
    assert api.classify_error(LegacyRateLimit(4)) == RetryDecision("rate_limit", 4)
    assert not RetryDecision("fatal").retryable and RetryDecision("rate_limit").retryable


async def test_backoff_happens_outside_the_connection_slot() -> None:
    model = mock(errors=["transient"])
    limiter = model.key().limiter
    seen: list[tuple[int, str]] = []
    other = mock()  # same connection key: shares the one slot

    async def sleep(seconds: float) -> None:
        # With the slot held this call would wait forever (limit 1).
        output = await asyncio.wait_for(other.generate("other", config=one), 2)
        seen.append((limiter.in_flight, output.completion))

    one = GenerateConfig(max_connections=1)
    model.sleep = sleep
    assert other.api.connection_key() == model.api.connection_key()
    assert (await model.generate("first", config=one)).completion == "first"
    assert seen == [(0, "other")]
    assert limiter.in_flight == 0


# -- deadlines ------------------------------------------------------------------------


async def test_hung_attempt_is_cancelled_within_attempt_timeout() -> None:
    model = get_model("hang/x")
    started = time.perf_counter()
    with pytest.raises(ModelTimeout, match=r"attempt_timeout=0\.2s") as info:
        await model.generate("hi", config=GenerateConfig(attempt_timeout=0.2, max_retries=0))
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 0.7
    assert isinstance(info.value, TimeoutError)
    assert HangAPI.cancelled == 1


async def test_timed_out_attempt_is_retried_as_transient() -> None:
    model = mock(errors=["hang"])
    sleeps = record_sleeps(model)
    started = time.perf_counter()
    output = await model.generate("again", config=GenerateConfig(attempt_timeout=0.1))
    assert time.perf_counter() - started < 0.6
    assert output.completion == "again"
    assert len(sleeps) == 1 and model.api.calls == 2  # type: ignore[attr-defined]


async def test_total_timeout_raises_model_timeout_with_history() -> None:
    model = get_model("hang/x")
    record_sleeps(model)
    started = time.perf_counter()
    with pytest.raises(ModelTimeout, match=r"exceeded timeout=0\.3s") as info:
        await model.generate(
            "hi", config=GenerateConfig(timeout=0.3, attempt_timeout=0.05, max_retries=1000)
        )
    assert time.perf_counter() - started < 0.8
    assert HangAPI.started >= 2 and HangAPI.cancelled == HangAPI.started
    history = info.value.gauge_attempts  # type: ignore[attr-defined]
    assert len(history) >= 1 and history[0]["kind"] == "transient"


async def test_total_timeout_also_bounds_backoff_waits() -> None:
    model = mock(errors=["rate_limit"], retry_after=60)  # real sleep: a 60 s wait
    started = time.perf_counter()
    with pytest.raises(ModelTimeout, match=r"timeout=0\.2s"):
        await model.generate("hi", config=GenerateConfig(timeout=0.2))
    assert time.perf_counter() - started < 0.7


async def test_fast_call_gets_its_time_measured() -> None:
    output = await mock(latency=0.02).generate("hi")
    assert output.time is not None and 0.015 <= output.time < 0.5


# -- connection limits ----------------------------------------------------------------


async def test_connection_limit_never_exceeded_under_200_concurrent_calls() -> None:
    in_flight = peak = 0

    async def answer(input: list[ChatMessage], *rest: Any) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        return input[-1].text

    model = mock(outputs=answer)
    config = GenerateConfig(max_connections=7)
    outputs = await asyncio.gather(*(model.generate(f"n{i}", config=config) for i in range(200)))
    assert [o.completion for o in outputs] == [f"n{i}" for i in range(200)]
    limiter = model.key().limiter
    assert peak == 7
    assert limiter.peak == 7
    assert limiter.in_flight == 0 and not limiter._waiters


async def test_adaptive_limit_starts_at_the_provider_default() -> None:
    release = asyncio.Event()

    async def answer(input: list[ChatMessage], *rest: Any) -> str:
        await release.wait()
        return "ok"

    model = mock(outputs=answer, max_connections=3)
    calls = [asyncio.ensure_future(model.generate("x")) for _ in range(30)]
    await asyncio.sleep(0.01)
    limiter = model.key().limiter
    # The first wave is the provider's default; the rest wait for slots.
    assert limiter.in_flight == 3 and len(limiter._waiters) == 27
    release.set()
    await asyncio.gather(*calls)
    # Saturated successes grow the (unset, hence adaptive) limit past the start.
    assert limiter.limit > 3 and limiter.peak > 3


async def test_limiter_resizing_wakes_waiters_and_lets_holders_finish() -> None:
    limiter = ConnectionLimiter(2)
    await limiter.acquire()
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert limiter.in_flight == 2 and len(limiter._waiters) == 3
    limiter.set_limit(4)
    await asyncio.sleep(0)
    assert [w.done() for w in waiters] == [True, True, False]
    assert limiter.in_flight == 4
    limiter.set_limit(1)
    limiter.release()
    limiter.release()
    limiter.release()
    await asyncio.sleep(0)
    assert not waiters[2].done() and limiter.in_flight == 1
    limiter.release()
    await asyncio.sleep(0)
    assert waiters[2].done() and limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0 and limiter.peak == 4
    with pytest.raises(ValueError, match="must be >= 1"):
        limiter.set_limit(0)


async def test_config_resizes_the_shared_limiter() -> None:
    model = mock(latency=0.002)
    await asyncio.gather(*(model.generate("x", config=GenerateConfig(max_connections=2))
                           for _ in range(10)))  # fmt: skip
    limiter = model.key().limiter
    assert limiter.peak == 2
    await asyncio.gather(*(model.generate("x", config=GenerateConfig(max_connections=5))
                           for _ in range(20)))  # fmt: skip
    assert limiter.limit == 5 and limiter.peak == 5


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = ConnectionLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not limiter._waiters and limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1)  # the slot is still usable


async def test_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    limiter = ConnectionLimiter(1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert limiter.in_flight == 1 and not limiter._waiters


async def test_waiter_cancelled_while_a_release_skips_it_does_not_crash() -> None:
    limiter = ConnectionLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()  # its future is cancelled now, before the task handles it
    limiter.release()  # the wake-up pass drops the cancelled future from the queue
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight == 0 and not limiter._waiters


async def test_cancelled_calls_release_their_slots() -> None:
    model = get_model("hang/x")
    config = GenerateConfig(max_connections=2)
    tasks = [asyncio.create_task(model.generate("x", config=config)) for _ in range(6)]
    await asyncio.sleep(0.02)
    limiter = model.key().limiter
    assert limiter.in_flight == 2 and len(limiter._waiters) == 4
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert limiter.in_flight == 0 and not limiter._waiters


# -- config checks --------------------------------------------------------------------


async def test_unsupported_result_changing_fields_fail_naming_field_and_provider() -> None:
    model = get_model("rec/x")
    with pytest.raises(UnsupportedConfig) as info:
        await model.generate("hi", config=GenerateConfig(top_k=3, seed=1, temperature=0.5))
    assert str(info.value) == (
        "provider 'rec' does not support seed, top_k; "
        "remove it, or set drop_unsupported=True to send the request without it"
    )
    assert Recorder.seen == []


async def test_unsupported_field_in_the_model_config_fails_too() -> None:
    model = get_model("rec/x", config=GenerateConfig(logprobs=True))
    with pytest.raises(UnsupportedConfig, match="does not support logprobs"):
        await model.generate("hi")


async def test_fields_set_to_none_are_not_unsupported() -> None:
    await get_model("rec/x").generate("hi", config=GenerateConfig(seed=None))
    assert len(Recorder.seen) == 1


async def test_drop_unsupported_sends_the_request_without_the_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = get_model("rec/x")
    config = GenerateConfig(num_choices=3, temperature=0.4, drop_unsupported=True)
    with caplog.at_level(logging.WARNING, logger="gauge.model"):
        await model.generate("hi", config=config)
    sent = Recorder.seen[0][3]
    assert sent.num_choices is None and "num_choices" not in sent.model_fields_set
    assert sent.temperature == 0.4
    assert "ignores num_choices" in caplog.text


async def test_advisory_fields_are_dropped_with_a_warning_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gauge.model"):
        await get_model("rec/x").generate("hi", config=GenerateConfig(cache_prompt=True))
    assert Recorder.seen[0][3].cache_prompt is None
    assert "ignores cache_prompt" in caplog.text


async def test_pipeline_fields_never_count_as_unsupported() -> None:
    config = GenerateConfig(
        max_retries=1, timeout=5, attempt_timeout=5, max_connections=3, system_message="s"
    )
    await get_model("rec/x").generate("hi", config=config)
    assert len(Recorder.seen) == 1


# -- message preparation --------------------------------------------------------------


async def test_system_message_is_inserted_after_leading_system_messages() -> None:
    model = get_model("rec/x")
    conversation: list[ChatMessage] = [
        ChatMessageSystem(content="first"),
        ChatMessageSystem(content="second"),
        ChatMessageUser(content="hi"),
    ]
    await model.generate(conversation, config=GenerateConfig(system_message="inserted"))
    sent = Recorder.seen[0][0]
    assert [(m.role, m.text) for m in sent] == [
        ("system", "first"),
        ("system", "second"),
        ("system", "inserted"),
        ("user", "hi"),
    ]
    assert len(conversation) == 3  # the caller's list is untouched
    await model.generate("plain", config=GenerateConfig(system_message="sys"))
    assert [(m.role, m.text) for m in Recorder.seen[1][0]] == [("system", "sys"), ("user", "plain")]


async def test_consecutive_messages_are_collapsed_when_the_provider_asks() -> None:
    call_a = ToolCall(id="a", function="f")
    call_b = ToolCall(id="b", function="g")
    conversation: list[ChatMessage] = [
        ChatMessageUser(content="one"),
        ChatMessageUser(content=[ContentText(text="two"), ContentImage(image="x.png")]),
        ChatMessageAssistant(content="three", tool_calls=[call_a]),
        ChatMessageAssistant(content="four", tool_calls=[call_b]),
        ChatMessageUser(content="five"),
    ]
    await get_model("collapse/x").generate(conversation)
    sent, tools, choice, _ = Recorder.seen[0]
    assert [m.role for m in sent] == ["user", "assistant", "user"]
    assert sent[0].text == "one\ntwo"
    assert any(isinstance(p, ContentImage) for p in sent[0].content)
    assert sent[1].text == "three\nfour"
    assert sent[1].tool_calls == [call_a, call_b]  # type: ignore[union-attr]
    # tools_required: the functions called in the history are declared, with choice none
    assert [t.name for t in tools] == ["f", "g"] and choice == "none"
    await get_model("rec/x").generate(conversation)
    assert len(Recorder.seen[1][0]) == 5  # a provider that does not ask gets them as they are


def reasoning_conversation() -> list[ChatMessage]:
    return [
        ChatMessageUser(content="q1"),
        ChatMessageAssistant(content=[ContentReasoning(reasoning="r1"), ContentText(text="a1")]),
        ChatMessageUser(content="q2"),
        ChatMessageAssistant(content=[ContentReasoning(reasoning="r2"), ContentText(text="a2")]),
        ChatMessageUser(content="q3"),
    ]


def reasoning_sent(index: int) -> list[str | None]:
    return [m.reasoning for m in Recorder.seen[index][0] if isinstance(m, ChatMessageAssistant)]


@pytest.mark.parametrize(
    ("provider", "history", "expected"),
    [
        ("rec", None, [None, None]),  # auto, provider cannot replay: dropped
        ("replay", None, ["r1", "r2"]),  # auto, provider replays: all kept
        ("replay", "none", [None, None]),
        ("replay", "last", [None, "r2"]),
        ("replay", "all", ["r1", "r2"]),
        ("rec", "last", [None, "r2"]),
    ],
)
async def test_reasoning_history_filtering(
    provider: str, history: str | None, expected: list[str | None]
) -> None:
    config = GenerateConfig(reasoning_history=history)  # type: ignore[arg-type]
    conversation = reasoning_conversation()
    await get_model(f"{provider}/x").generate(conversation, config=config)
    assert reasoning_sent(0) == expected
    assert [m.text for m in Recorder.seen[0][0]] == ["q1", "a1", "q2", "a2", "q3"]
    assert conversation[1].reasoning == "r1"  # the caller's messages are untouched


async def test_tool_images_move_to_a_user_message_when_the_provider_needs_it() -> None:
    image = ContentImage(image="data:image/png;base64,iVBORw0KGgo=")
    conversation: list[ChatMessage] = [
        ChatMessageUser(content="look"),
        ChatMessageAssistant(content="", tool_calls=[ToolCall(id="c1", function="shot")]),
        ChatMessageTool(content=[ContentText(text="screenshot"), image], tool_call_id="c1"),
    ]
    await get_model("rec/x").generate(conversation)
    sent = Recorder.seen[0][0]
    assert [m.role for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2].text == "screenshot\n(the tool's image is attached below)"
    assert not any(isinstance(p, ContentImage) for p in sent[2].content)
    assert sent[3].content == [image] and sent[3].tool_call_id == ["c1"]  # type: ignore[union-attr]
    await get_model("replay/x").generate(conversation)
    assert [m.role for m in Recorder.seen[1][0]] == ["user", "assistant", "tool"]


async def test_tool_choice_defaults() -> None:
    model = get_model("rec/x")
    tool = ToolInfo(name="add")
    await model.generate("hi", tools=[tool])
    await model.generate("hi")
    await model.generate("hi", tools=[tool], tool_choice="any")
    assert [s[2] for s in Recorder.seen] == ["auto", "none", "any"]


# -- usage and info -------------------------------------------------------------------


async def test_usage_totals_per_model() -> None:
    before = model_usage()
    rec = get_model("rec/usage-a")
    other = get_model("rec/usage-b")
    await rec.generate("hi")
    await rec.generate("hi")
    await other.generate("hi")
    totals = model_usage()

    def grew(name: str) -> int:
        old = before.get(name, ModelUsage())
        return totals[name].total_tokens - old.total_tokens

    assert grew("rec/usage-a") == 14 and grew("rec/usage-b") == 7
    assert rec.usage.input_tokens == 10 and rec.usage.output_tokens == 4
    assert other.usage.total_tokens == 7


async def test_info() -> None:
    info = get_model("mock/info-model", config=GenerateConfig(max_tokens=32)).info()
    assert {k: info[k] for k in ("name", "provider", "model_id", "max_tokens")} == {
        "name": "mock/info-model",
        "provider": "mock",
        "model_id": "info-model",
        "max_tokens": 32,
    }
    assert info["supports_streaming"] is True and info["supports_chat"] is True


async def test_max_tool_output_truncates_tool_text_in_bytes() -> None:
    conversation: list[ChatMessage] = [
        ChatMessageUser(content="run it"),
        ChatMessageAssistant(content="", tool_calls=[ToolCall(id="c1", function="sh")]),
        ChatMessageTool(content="abcdefghij", tool_call_id="c1"),
        ChatMessageTool(content=[ContentText(text="é" * 4), ContentText(text="tail")]),
        ChatMessageTool(content="short", tool_call_id="c3"),
    ]
    await get_model("rec/x").generate(conversation, config=GenerateConfig(max_tool_output=5))
    sent = Recorder.seen[0][0]
    note = "\n[tool output truncated to 5 bytes]"
    assert sent[2].content == "abcde" + note
    # "é" is two bytes: the character cut in half is dropped, not mangled
    assert sent[3].text == "éé" + note  # text parts past the limit are dropped
    assert sent[4].content == "short"
    assert conversation[2].content == "abcdefghij"
    await get_model("rec/x").generate(conversation)
    assert Recorder.seen[1][0][2].content == "abcdefghij"  # no limit set: sent whole


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["hi"], "input message 0 is a str, not a chat message"),
        ([ChatMessageUser(content="a"), {"role": "user", "content": "b"}], "message 1 is a dict"),
        (42, "input must be a string or a list of chat messages, got int"),
    ],
)
async def test_bad_input_is_a_one_line_config_error(bad: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await get_model("rec/x").generate(bad)
    assert Recorder.seen == []


async def test_fields_set_to_their_off_value_are_not_unsupported() -> None:
    await get_model("rec/x").generate("hi", config=GenerateConfig(logprobs=False, stop_seqs=[]))
    assert len(Recorder.seen) == 1


async def test_timeout_during_backoff_counts_attempts_made() -> None:
    model = mock(errors=["rate_limit"], retry_after=60)
    with pytest.raises(ModelTimeout, match=r"after 1 failed attempt\(s\)"):
        await model.generate("hi", config=GenerateConfig(timeout=0.1))
