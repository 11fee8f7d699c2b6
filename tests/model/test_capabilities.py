"""The ModelAPI contract: capabilities are data, `generate` is the one required method."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gauge.model import registry
from gauge.model.api import CAPABILITIES, ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.factory import get_model
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.output import ModelOutput
from gauge.model.prepare import prepare_messages, resolve_tools
from gauge.model.providers._http import HTTPStatusError
from gauge.model.tools import ToolCall, ToolChoice, ToolInfo

DOCS = Path(__file__).parents[2] / "docs" / "extending.md"


def builtin_classes() -> list[type[ModelAPI]]:
    """Every built-in provider class, and every ModelAPI subclass their modules define."""
    classes = {registry.provider_class(name) for name in registry.BUILTINS}
    import gauge.model.providers.template
    import gauge.model.providers.vllm_engine  # noqa: F401 (vllm/ routes here without a URL)

    pending = list(ModelAPI.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("gauge.model.providers"):
            classes.add(cls)
        pending.extend(cls.__subclasses__())
    return sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}")


@pytest.mark.parametrize("cls", builtin_classes(), ids=lambda c: c.__qualname__)
def test_every_provider_declares_capabilities_as_bool_data(cls: type[ModelAPI]) -> None:
    for attr in CAPABILITIES:
        value = inspect.getattr_static(cls, attr)
        assert type(value) is bool, f"{cls.__qualname__}.{attr} is {value!r}, not a bool"
        assert not callable(value)


def test_the_base_defaults_are_false_and_the_legacy_hook_is_gone() -> None:
    for attr in CAPABILITIES:
        assert inspect.getattr_static(ModelAPI, attr) is False
    assert not hasattr(ModelAPI, "is_rate_limit")
    assert ModelAPI.__abstractmethods__ == frozenset({"generate"})


def test_the_capability_names() -> None:
    assert CAPABILITIES == (
        "collapse_user_messages",
        "collapse_assistant_messages",
        "tools_required",
        "tool_result_images",
        "has_reasoning_history",
    )


@pytest.mark.parametrize("attr", CAPABILITIES)
def test_a_capability_written_as_a_method_is_refused_at_class_definition(attr: str) -> None:
    # The old hook form would otherwise read as True (a bound method is truthy).
    def hook(self: ModelAPI) -> bool:
        return False

    with pytest.raises(TypeError, match=rf"Legacy\.{attr} must be a bool .*`{attr} = True`"):
        type("Legacy", (ModelAPI,), {attr: hook})
    with pytest.raises(TypeError, match="must be a bool"):
        type("Stringly", (ModelAPI,), {attr: "yes"})
    assert getattr(type("Fine", (ModelAPI,), {attr: True}), attr) is True


EXPECTED = {
    # provider: (collapse_user, collapse_assistant, tools_required, tool_images, reasoning)
    "anthropic": (True, True, True, True, True),
    "mistral": (True, False, False, False, False),
    "google": (False, False, False, False, True),
    "bedrock": (True, True, True, False, False),  # reasoning: per model, see below
    "openai": (False, False, False, False, False),
    "cohere": (False, False, False, False, False),
    "mock": (False, False, False, False, False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_capability_values(name: str) -> None:
    cls = registry.provider_class(name)
    assert tuple(getattr(cls, attr) for attr in CAPABILITIES) == EXPECTED[name]


@pytest.mark.parametrize(
    ("model", "replays"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", True),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", True),
        ("meta.llama3-8b-instruct-v1:0", False),
        ("mistral.mistral-large-2402-v1:0", False),
    ],
)
def test_bedrock_decides_reasoning_replay_per_model_as_instance_data(
    model: str, replays: bool
) -> None:
    from gauge.model.providers.bedrock import BedrockAPI

    api = BedrockAPI(model, base_url="http://127.0.0.1:9", region="us-east-1")
    assert api.has_reasoning_history is replays
    assert "has_reasoning_history" in vars(api)  # data on the instance, not a method
    for attr in CAPABILITIES:
        assert type(getattr(api, attr)) is bool
    assert (api.collapse_user_messages, api.tools_required) == (True, True)


# A custom provider that defines only `generate` works with every default.


class OnlyGenerate(ModelAPI):
    seen: list[list[ChatMessage]]

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        OnlyGenerate.seen.append(input)
        return ModelOutput.from_content(self.model_name, f"{len(input)} messages")


class CollapsingOnly(OnlyGenerate):
    collapse_user_messages = True
    collapse_assistant_messages = True
    tools_required = True
    tool_result_images = True
    has_reasoning_history = True


@pytest.fixture(autouse=True)
def custom_providers() -> Iterator[None]:
    registry.modelapi("onlygen")(OnlyGenerate)
    registry.modelapi("collapsing")(CollapsingOnly)
    OnlyGenerate.seen = []
    yield
    registry.unregister("onlygen")
    registry.unregister("collapsing")


def history() -> list[ChatMessage]:
    return [
        ChatMessageUser(content="one"),
        ChatMessageUser(content="two"),
        ChatMessageAssistant(
            content=[ContentReasoning(reasoning="hmm"), ContentText(text="calling")],
            tool_calls=[ToolCall(id="c1", function="lookup", arguments={})],
        ),
        ChatMessageTool(
            content=[ContentText(text="found"), ContentImage(image="data:image/png;base64,AA==")],
            tool_call_id="c1",
        ),
        ChatMessageAssistant(content="done"),
        ChatMessageAssistant(content="really"),
    ]


async def test_a_provider_defining_only_generate_works_with_the_defaults() -> None:
    model = get_model("onlygen/tiny", memoize=False)
    api = model.api
    assert [getattr(api, attr) for attr in CAPABILITIES] == [False] * 5
    assert api.max_tokens() is None and api.max_connections() == 10
    assert api.score_batch_size() == 1 and api.spec_name() == "tiny"
    assert api.classify_error(TimeoutError()) == RetryDecision("transient")
    assert api.classify_error(ConnectionResetError()) == RetryDecision("transient")
    assert api.classify_error(ValueError("bad")) == RetryDecision("fatal")

    output = await model.generate(history())
    [sent] = OnlyGenerate.seen
    # Nothing collapsed; the tool image moved to a user message; reasoning dropped (auto).
    assert [m.role for m in sent] == [
        "user",
        "user",
        "assistant",
        "tool",
        "user",
        "assistant",
        "assistant",
    ]
    assert output.completion == "7 messages"
    assert isinstance(sent[4].content, list)
    assert isinstance(sent[4].content[0], ContentImage)
    assert isinstance(sent[2].content, list)
    assert not any(isinstance(p, ContentReasoning) for p in sent[2].content)
    chunks = [chunk async for chunk in model.stream("hi")]
    assert "".join(chunks) == "1 messages"
    await model.close()


def test_capability_data_drives_message_preparation() -> None:
    config = GenerateConfig()
    plain = OnlyGenerate("x")
    shaped = CollapsingOnly("x")
    assert len(prepare_messages(history(), plain, config)) == 7
    prepared = prepare_messages(history(), shaped, config)
    assert [m.role for m in prepared] == ["user", "assistant", "tool", "assistant"]
    assert isinstance(prepared[1].content, list)
    assert any(isinstance(p, ContentReasoning) for p in prepared[1].content)  # replayed
    assert isinstance(prepared[2].content, list)
    assert any(isinstance(p, ContentImage) for p in prepared[2].content)  # kept in place

    assert resolve_tools(history(), [], None, plain) == ([], "none")
    assert resolve_tools(history(), [], None, shaped) == ([ToolInfo(name="lookup")], "none")


def test_a_per_instance_capability_overrides_the_class_value() -> None:
    class PerModel(OnlyGenerate):
        def __init__(self, model_name: str, **kwargs: Any) -> None:
            super().__init__(model_name, **kwargs)
            self.collapse_user_messages = model_name.startswith("strict")

    config = GenerateConfig()
    assert len(prepare_messages(history(), PerModel("strict-1"), config)) == 6
    assert len(prepare_messages(history(), PerModel("lenient-1"), config)) == 7
    assert PerModel.collapse_user_messages is False


# Rate limits are classified by the provider's classify_error (no is_rate_limit hook).


class SlowDown(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


class ClassifyingAPI(OnlyGenerate):
    failures = 0

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if ClassifyingAPI.failures:
            ClassifyingAPI.failures -= 1
            raise SlowDown(retry_after=4)
        return await super().generate(input, tools, tool_choice, config)

    def classify_error(self, ex: BaseException) -> RetryDecision:
        if isinstance(ex, SlowDown):
            return RetryDecision("rate_limit", ex.retry_after)
        return super().classify_error(ex)


def test_the_default_classifier_does_not_guess_rate_limits() -> None:
    # An exception carrying a retry_after is not a rate limit unless the provider says so.
    assert OnlyGenerate("x").classify_error(SlowDown(4)) == RetryDecision("fatal")
    api = ClassifyingAPI("x")
    assert api.classify_error(SlowDown(4)) == RetryDecision("rate_limit", 4)
    assert api.classify_error(TimeoutError()) == RetryDecision("transient")
    assert api.classify_error(KeyError("x")) == RetryDecision("fatal")


async def test_a_provider_classified_rate_limit_is_retried_after_its_wait() -> None:
    registry.modelapi("classifying")(ClassifyingAPI)
    try:
        ClassifyingAPI.failures = 2
        model = get_model("classifying/x", memoize=False)
        sleeps: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        model.sleep = fake_sleep
        assert (await model.generate("hi")).completion == "1 messages"
        assert len(sleeps) == 2 and all(4 <= s <= 4.4 for s in sleeps)
    finally:
        registry.unregister("classifying")


@pytest.mark.parametrize("name", ["anthropic", "bedrock", "cohere", "google", "mistral", "openai"])
def test_builtin_http_providers_classify_429_as_a_rate_limit(name: str) -> None:
    cls = registry.provider_class(name)
    api = object.__new__(cls)  # classify_error needs no client
    error = HTTPStatusError(429, "Too Many Requests", None, {"Retry-After": "7"})
    assert api.classify_error(error) == RetryDecision("rate_limit", 7.0)
    assert api.classify_error(HTTPStatusError(503, "busy")).kind == "transient"
    assert api.classify_error(HTTPStatusError(400, "bad")) == RetryDecision("fatal")


def test_the_docs_list_every_member_of_the_contract() -> None:
    text = DOCS.read_text()
    section = text.split("### All members", 1)[1].split("\n## ", 1)[0]
    section = section.split("The\nconstructor", 1)[0]
    documented = set(re.findall(r"`(\w+)`", section)) - {"ModelAPI"}
    members = {
        name for name in dir(ModelAPI) if not name.startswith("_") and name not in dir(object)
    }
    assert documented == members
    count = re.search(r"`ModelAPI` has (\d+) members", section)
    assert count is not None and int(count.group(1)) == len(members)
    for attr in CAPABILITIES:
        assert f"| `{attr}` | `False` |" in text
    assert "is_rate_limit(ex)" not in text
