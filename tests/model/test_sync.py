"""The blocking facade: generate, chat, stream and info, with and without a running loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.providers.mock import MockFatalError
from gauge.model.sync import SyncModel, messages_from_dicts


def reply(input: list[ChatMessage], tools: Any, choice: Any, config: GenerateConfig) -> str:
    """Describe the conversation, so tests can see what reached the provider."""
    roles = ",".join(m.role for m in input)
    return f"{roles}|{input[-1].text}|t={config.temperature}"


def sync_model(**args: Any) -> SyncModel:
    return get_model("mock/sync", memoize=False, outputs=reply, **args).sync()


CHAT = [
    {"role": "system", "content": "be terse"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "bye"},
]


def check_all(model: SyncModel) -> None:
    assert model.generate("hello", temperature=0.5) == "user|hello|t=0.5"
    assert model.chat(CHAT) == "system,user,assistant,user|bye|t=None"
    deltas = list(model.stream("a b c"))
    assert deltas == ["user|a", " b", " c|t=None"]
    info = model.info()
    assert info["name"] == "mock/sync" and info["supports_streaming"] is True


def test_outside_an_event_loop() -> None:
    check_all(sync_model())


async def test_inside_a_running_loop_as_in_jupyter() -> None:
    asyncio.get_running_loop()  # a loop is running, like a notebook cell's
    check_all(sync_model())


def test_errors_reach_the_caller() -> None:
    model = get_model("mock/sync", memoize=False, errors=["fatal"]).sync()
    with pytest.raises(MockFatalError):
        model.generate("x")
    failing = get_model("mock/sync", memoize=False, errors=["fatal"]).sync()
    with pytest.raises(MockFatalError):
        list(failing.stream("x"))


def test_stream_can_be_abandoned_early() -> None:
    model = get_model("mock/sync", memoize=False, outputs=["one two three four"]).sync()
    stream = model.stream("x")
    assert next(stream) == "one"
    stream.close()
    assert model.info()["model_id"] == "sync"


def test_close() -> None:
    model = sync_model()
    model.close()


def test_chat_with_tool_messages_and_content_parts() -> None:
    messages = messages_from_dicts(
        [
            {"role": "user", "content": [{"type": "text", "text": "look"}]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ]
    )
    assert [m.role for m in messages] == ["user", "tool"]
    assert messages[0].text == "look" and messages[1].tool_call_id == "c1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"content": "no role"}], "message 0 needs a role of system, user, assistant or tool"),
        ([{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}], "got 'bot'"),
        (["just a string"], "message 0 needs a role"),
    ],
)
def test_bad_chat_messages_are_one_line_config_errors(messages: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        sync_model().chat(messages)


def test_bad_message_fields_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        messages_from_dicts([{"role": "user"}])
    assert str(info.value) == "message 0 (user): content: Field required"


def test_bad_generate_options_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        sync_model().generate("x", temprature=0.5)
    assert str(info.value) == "bad generate option: temprature: Extra inputs are not permitted"
    with pytest.raises(ConfigError, match="temperature: Input should be less than or equal to 2"):
        sync_model().generate("x", temperature=3)
