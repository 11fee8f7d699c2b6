"""cohere/<model> against a fake Cohere v2 server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fake_cohere import FakeCohere, Reply, chat_reply, stream_events

from gauge.errors import ConfigError, MissingAPIKey, UnsupportedConfig
from gauge.model.config import GenerateConfig, ResponseSchema
from gauge.model.content import ContentImage, ContentText
from gauge.model.factory import get_model
from gauge.model.messages import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.model import Model
from gauge.model.providers.cohere import CohereError
from gauge.model.tools import ToolCall, ToolFunction, ToolInfo, ToolParams

PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = ToolInfo(
    name="weather",
    description="Weather for a city",
    parameters=ToolParams(properties={"city": {"type": "string"}}, required=["city"]),
)


@pytest.fixture
async def server() -> AsyncIterator[FakeCohere]:
    fake = FakeCohere()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def model(server: FakeCohere, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Model]:
    monkeypatch.setenv("COHERE_API_KEY", "co-test-key")
    monkeypatch.setenv("COHERE_BASE_URL", server.base_url)
    m = get_model("cohere/command-r-plus", memoize=False)
    m.sleep = _RecordSleep()
    yield m
    await m.close()


class _RecordSleep:
    """A backoff sleep that records its waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_plain_text_sends_v2_body_with_bearer_key(model: Model, server: FakeCohere) -> None:
    server.replies.append(chat_reply("Paris.", input_tokens=9, output_tokens=3))
    output = await model.generate("Capital of France?")
    assert output.completion == "Paris."
    assert output.stop_reason == "stop"
    assert output.usage is not None
    # `tokens` (what the model read) wins over billed_units.
    assert (output.usage.input_tokens, output.usage.output_tokens) == (109, 3)
    assert output.usage.total_tokens == 112
    sent = server.requests[0]
    assert sent["path"] == "/v2/chat"
    assert sent["headers"]["Authorization"] == "Bearer co-test-key"
    assert sent["json"] == {
        "model": "command-r-plus",
        "messages": [{"role": "user", "content": "Capital of France?"}],
    }


async def test_system_multi_turn_and_sampling_fields(model: Model, server: FakeCohere) -> None:
    config = GenerateConfig(
        max_tokens=50,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        seed=7,
        stop_seqs=["END"],
        frequency_penalty=0.1,
        presence_penalty=0.2,
    )
    await model.generate(
        [
            ChatMessageSystem(content="Be terse."),
            ChatMessageUser(content="Hi"),
            ChatMessageAssistant(content="Hello."),
            ChatMessageUser(content="Bye"),
        ],
        config=config,
    )
    body = server.requests[0]["json"]
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.3
    assert (body["p"], body["k"], body["seed"]) == (0.9, 40, 7)
    assert body["stop_sequences"] == ["END"]
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.1, 0.2)


async def test_image_input_is_an_image_url_part(model: Model, server: FakeCohere) -> None:
    message = ChatMessageUser(
        content=[ContentText(text="What is this?"), ContentImage(image=PNG, detail="low")]
    )
    await model.generate([message])
    assert server.requests[0]["json"]["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
    ]


async def test_tool_call_round_trip(model: Model, server: FakeCohere) -> None:
    server.replies.append(
        chat_reply(
            text="",
            finish_reason="TOOL_CALL",
            tool_plan="I will look up the weather.",
            tool_calls=[
                {
                    "id": "tc_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        )
    )
    first = await model.generate("Weather in Oslo?", tools=[WEATHER])
    assert first.stop_reason == "tool_calls"
    call = first.message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function, call.arguments) == ("tc_1", "weather", {"city": "Oslo"})
    assert first.completion == "I will look up the weather."
    sent_tools = server.requests[0]["json"]["tools"]
    assert sent_tools == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    assert "tool_choice" not in server.requests[0]["json"]

    server.replies.append(chat_reply("It is 3 degrees in Oslo."))
    history = [
        ChatMessageUser(content="Weather in Oslo?"),
        first.message,
        ChatMessageTool(content="3 degrees", tool_call_id="tc_1", function="weather"),
    ]
    second = await model.generate(history, tools=[WEATHER])
    assert second.completion == "It is 3 degrees in Oslo."
    messages = server.requests[1]["json"]["messages"]
    assert messages[1] == {
        "role": "assistant",
        "tool_plan": "I will look up the weather.",
        "tool_calls": [
            {
                "id": "tc_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "tc_1",
        "content": [{"type": "text", "text": "3 degrees"}],
    }


async def test_tool_choice_mapping(model: Model, server: FakeCohere) -> None:
    other = ToolInfo(name="clock", description="Time")
    await model.generate("x", tools=[WEATHER, other], tool_choice="any")
    await model.generate("x", tools=[WEATHER, other], tool_choice="none")
    await model.generate("x", tools=[WEATHER, other], tool_choice=ToolFunction(name="clock"))
    bodies = [r["json"] for r in server.requests]
    assert bodies[0]["tool_choice"] == "REQUIRED"
    assert bodies[1]["tool_choice"] == "NONE"
    # v2 cannot name a tool: offering only that tool with REQUIRED forces exactly that call.
    assert bodies[2]["tool_choice"] == "REQUIRED"
    assert [t["function"]["name"] for t in bodies[2]["tools"]] == ["clock"]
    with pytest.raises(ConfigError, match="not one of: weather"):
        await model.generate("x", tools=[WEATHER], tool_choice=ToolFunction(name="nope"))


async def test_bad_tool_arguments_are_reported_not_raised(model: Model, server: FakeCohere) -> None:
    server.replies.append(
        chat_reply(
            text="",
            finish_reason="TOOL_CALL",
            tool_calls=[{"id": "t", "function": {"name": "weather", "arguments": "{city"}}],
        )
    )
    output = await model.generate("x", tools=[WEATHER])
    call = output.message.tool_calls[0]  # type: ignore[index]
    assert call.arguments == {}
    assert call.parse_error is not None and "not JSON" in call.parse_error


@pytest.mark.parametrize(
    ("finish", "expected", "error"),
    [
        ("COMPLETE", "stop", None),
        ("STOP_SEQUENCE", "stop", None),
        ("MAX_TOKENS", "max_tokens", None),
        ("ERROR", "unknown", "cohere stopped generating with finish_reason ERROR"),
        ("TIMEOUT", "unknown", "cohere stopped generating with finish_reason TIMEOUT"),
    ],
)
async def test_stop_reasons(
    model: Model, server: FakeCohere, finish: str, expected: str, error: str | None
) -> None:
    server.replies.append(chat_reply("x", finish_reason=finish))
    output = await model.generate("x")
    assert output.stop_reason == expected
    assert output.error == error


async def test_json_schema_and_logprobs(model: Model, server: FakeCohere) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    server.replies.append(
        chat_reply(
            '{"a": 1}',
            logprobs=[
                {"token_ids": [5, 6], "text": '{"a', "logprobs": [-0.5, -0.25]},
                {"token_ids": [7], "text": '": 1}', "logprobs": [-1.0]},
            ],
        )
    )
    config = GenerateConfig(response_schema=ResponseSchema(name="a", json_schema=schema))
    output = await model.generate("x", config=config.merge(GenerateConfig(logprobs=True)))
    body = server.requests[0]["json"]
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}
    assert body["logprobs"] is True
    logprobs = output.choices[0].logprobs
    assert logprobs is not None
    assert [(lp.token, lp.logprob) for lp in logprobs.content] == [('{"a', -0.75), ('": 1}', -1.0)]


async def test_extra_body_and_headers_are_sent(model: Model, server: FakeCohere) -> None:
    config = GenerateConfig(
        extra_body={"safety_mode": "STRICT"}, extra_headers={"X-Client-Name": "gauge-test"}
    )
    await model.generate("x", config=config)
    assert server.requests[0]["json"]["safety_mode"] == "STRICT"
    assert server.requests[0]["headers"]["X-Client-Name"] == "gauge-test"


async def test_streaming_yields_text_deltas(model: Model, server: FakeCohere) -> None:
    server.replies.append(Reply(events=stream_events(["Hel", "lo", " there"])))
    chunks = [chunk async for chunk in model.stream("Say hello")]
    assert chunks == ["Hel", "lo", " there"]
    assert server.requests[0]["json"]["stream"] is True


async def test_stream_rate_limit_before_text_is_retried(model: Model, server: FakeCohere) -> None:
    server.replies += [
        Reply({"message": "slow down"}, status=429, headers={"Retry-After": "1"}),
        Reply(events=stream_events(["fine"])),
    ]
    chunks = [chunk async for chunk in model.stream("x")]
    assert chunks == ["fine"]
    assert len(server.requests) == 2
    assert 1.0 <= model.sleep.waits[0] <= 1.1  # type: ignore[attr-defined]


async def test_rate_limit_is_retried_by_the_pipeline(model: Model, server: FakeCohere) -> None:
    server.replies += [
        Reply({"message": "You are using a Trial key"}, status=429, headers={"Retry-After": "2"}),
        Reply({"message": "internal error"}, status=500),
        chat_reply("finally"),
    ]
    output = await model.generate("x")
    assert output.completion == "finally"
    assert len(server.requests) == 3
    # The first wait honours Retry-After (2 s plus up to 10 % jitter).
    waits = model.sleep.waits  # type: ignore[attr-defined]
    assert len(waits) == 2 and 2.0 <= waits[0] <= 2.2


async def test_classification_of_statuses(model: Model, server: FakeCohere) -> None:
    server.replies.append(
        Reply({"message": "Too many requests"}, status=429, headers={"Retry-After": "2"})
    )
    with pytest.raises(CohereError) as info:
        await model.generate("x", config=GenerateConfig(max_retries=0))
    decision = model.api.classify_error(info.value)
    assert decision.kind == "rate_limit"
    assert decision.retry_after == 2.0
    assert str(info.value) == "cohere HTTP 429: Too many requests"
    for status, kind in ((503, "transient"), (500, "transient"), (400, "fatal"), (498, "fatal")):
        server.replies.append(Reply({"message": f"status {status}"}, status=status))
        with pytest.raises(CohereError) as info:
            await model.generate("x", config=GenerateConfig(max_retries=0))
        assert model.api.classify_error(info.value).kind == kind


async def test_fatal_error_is_not_retried(model: Model, server: FakeCohere) -> None:
    server.replies.append(Reply({"message": "invalid request: model not found"}, status=400))
    with pytest.raises(CohereError, match="model not found"):
        await model.generate("x")
    assert len(server.requests) == 1


async def test_connection_refused_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COHERE_API_KEY", "k")
    model = get_model("cohere/command-r", base_url="http://127.0.0.1:9", memoize=False)
    with pytest.raises(ConnectionError) as info:
        await model.generate("x", config=GenerateConfig(max_retries=0))
    assert model.api.classify_error(info.value).kind == "transient"
    await model.close()


async def test_unsupported_field_is_a_clear_error(model: Model, server: FakeCohere) -> None:
    with pytest.raises(UnsupportedConfig, match="does not support num_choices"):
        await model.generate("x", config=GenerateConfig(num_choices=2))
    assert server.requests == []


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(MissingAPIKey, match="COHERE_API_KEY"):
        get_model("cohere/command-r")


def test_audio_input_is_rejected_with_a_clear_error() -> None:
    from gauge.model.content import ContentAudio
    from gauge.model.providers.cohere.request import chat_body

    message = ChatMessageUser(content=[ContentAudio(audio="a.wav", format="wav")])
    with pytest.raises(ConfigError, match="cohere cannot take ContentAudio"):
        chat_body("m", [message], [], "none", GenerateConfig())


def test_assistant_tool_calls_without_text_have_no_tool_plan() -> None:
    from gauge.model.providers.cohere.request import message

    call = ToolCall(id="a", function="f", arguments={"x": 1})
    sent = message(ChatMessageAssistant(content="", tool_calls=[call]))
    assert "tool_plan" not in sent and "content" not in sent


def test_gauge_models_shows_the_cohere_row(capsys: pytest.CaptureFixture[str]) -> None:
    from gauge.cli.main import main

    main(["models"])
    text = capsys.readouterr().out
    assert "cohere/  extra=-  installed" in text
    main(["models", "--json"])
    rows = {row["provider"]: row for row in json.loads(capsys.readouterr().out)}
    cohere = rows["cohere"]
    assert (cohere["extra"], cohere["installed"], cohere["needs_api_key"]) == (None, True, True)
    assert cohere["api_key_vars"] == ["COHERE_API_KEY"]
    assert cohere["base_url_vars"] == ["COHERE_BASE_URL"]
    assert cohere["default_base_url"] == "https://api.cohere.com"
    assert cohere["streaming"] is True
    assert "seed" in cohere["honours"] and "num_choices" not in cohere["honours"]
