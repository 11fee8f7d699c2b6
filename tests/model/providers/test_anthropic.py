"""anthropic/<model> against a fake Messages API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_anthropic import FakeAnthropic, message, stream_events

from gauge.errors import ConfigError, MissingAPIKey, UnsupportedConfig
from gauge.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ContentImage,
    ContentReasoning,
    ContentText,
    GenerateConfig,
    ToolCall,
    ToolFunction,
    ToolInfo,
    ToolParams,
    get_model,
)
from gauge.model.model import Model
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.anthropic.errors import AnthropicResponseError

WEATHER = ToolInfo(
    name="weather",
    description="Weather in a city",
    parameters=ToolParams(properties={"city": {"type": "string"}}, required=["city"]),
)


@pytest.fixture
async def server() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def model(server: FakeAnthropic) -> AsyncIterator[Model]:
    async with get_model("anthropic/claude-test", base_url=server.url, api_key="sk-ant-test") as m:
        waits: list[float] = []

        async def record(seconds: float) -> None:
            waits.append(seconds)

        m.sleep = record
        m.waits = waits  # type: ignore[attr-defined]
        yield m


async def test_plain_text_request_headers_and_output(server: FakeAnthropic, model: Model) -> None:
    server.reply(message("Hi there", usage={"input_tokens": 12, "output_tokens": 4}))
    output = await model.generate("Hello")
    assert server.last.path == "/v1/messages"
    assert server.last.headers["x-api-key"] == "sk-ant-test"
    assert server.last.headers["anthropic-version"] == "2023-06-01"
    assert server.last.body == {
        "model": "claude-test",
        "max_tokens": 16384,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }
    assert output.completion == "Hi there"
    assert output.stop_reason == "stop"
    assert output.model == "claude-test"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens) == (12, 4)
    assert output.usage.total_tokens == 16


async def test_system_lifted_and_multi_turn_alternates(server: FakeAnthropic, model: Model) -> None:
    await model.generate(
        [
            ChatMessageSystem(content="Be brief."),
            ChatMessageUser(content="One"),
            ChatMessageUser(content="Two"),
            ChatMessageAssistant(content="Ok"),
            ChatMessageUser(content="Three"),
        ],
        config=GenerateConfig(
            temperature=0.2, top_p=0.9, top_k=5, stop_seqs=["END"], max_tokens=50
        ),
    )
    body = server.last.body
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "Three"}]},
    ]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert body["stop_sequences"] == ["END"]
    assert body["max_tokens"] == 50


async def test_tool_call_round_trip(server: FakeAnthropic, model: Model) -> None:
    server.reply(
        message(
            [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ],
            stop_reason="tool_use",
        )
    )
    first = await model.generate(
        "Weather in Oslo?",
        tools=[WEATHER],
        tool_choice=ToolFunction(name="weather"),
        config=GenerateConfig(parallel_tool_calls=False),
    )
    assert server.last.body["tools"] == [
        {
            "name": "weather",
            "description": "Weather in a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        }
    ]
    assert server.last.body["tool_choice"] == {
        "type": "tool",
        "name": "weather",
        "disable_parallel_tool_use": True,
    }
    assert first.stop_reason == "tool_calls"
    assert first.message.tool_calls == [
        ToolCall(id="toolu_1", function="weather", arguments={"city": "Oslo"})
    ]
    assert first.completion == "Let me check."

    server.reply(message("It is sunny."))
    history = [
        ChatMessageUser(content="Weather in Oslo?"),
        first.message,
        ChatMessageTool(content="sunny, 20C", tool_call_id="toolu_1", function="weather"),
    ]
    second = await model.generate(history, tools=[WEATHER])
    assert server.last.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "sunny, 20C"}],
                }
            ],
        },
    ]
    assert server.last.body["tool_choice"] == {"type": "auto"}
    assert second.completion == "It is sunny."


async def test_history_tool_calls_declare_tools_without_definitions(
    server: FakeAnthropic, model: Model
) -> None:
    history = [
        ChatMessageUser(content="q"),
        ChatMessageAssistant(content="", tool_calls=[ToolCall(id="t1", function="calc")]),
        ChatMessageTool(content="4", tool_call_id="t1"),
    ]
    await model.generate(history)
    assert [t["name"] for t in server.last.body["tools"]] == ["calc"]
    assert server.last.body["tool_choice"] == {"type": "none"}


async def test_image_inputs_url_and_data_uri(server: FakeAnthropic, model: Model) -> None:
    await model.generate(
        [
            ChatMessageUser(
                content=[
                    ContentText(text="What is this?"),
                    ContentImage(image="https://example.com/cat.png"),
                    ContentImage(image="data:image/png;base64,iVBORw0KGgo="),
                ]
            )
        ]
    )
    assert server.last.body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
    ]


async def test_bad_image_is_a_clear_error(model: Model) -> None:
    with pytest.raises(ConfigError, match="http\\(s\\) URL or a base64 data URI"):
        await model.generate([ChatMessageUser(content=[ContentImage(image="cat.png")])])


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "max_tokens"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "model_length"),
        ("something_new", "unknown"),
    ],
)
async def test_stop_reasons(server: FakeAnthropic, model: Model, wire: str, expected: str) -> None:
    server.reply(message("x", stop_reason=wire))
    output = await model.generate("hi")
    assert output.stop_reason == expected
    assert (output.error is not None) == (wire == "refusal")


async def test_usage_with_cache_read_and_write(server: FakeAnthropic, model: Model) -> None:
    usage = {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 300,
    }
    server.reply(message("ok", usage=usage))
    output = await model.generate("hi")
    assert output.usage is not None
    assert output.usage.input_tokens_cache_write == 100
    assert output.usage.input_tokens_cache_read == 300
    assert output.usage.total_tokens == 412
    assert model.usage.total_tokens == 412


async def test_cache_prompt_sets_breakpoints(server: FakeAnthropic, model: Model) -> None:
    await model.generate(
        [ChatMessageSystem(content="sys"), ChatMessageUser(content="q")],
        tools=[WEATHER],
        config=GenerateConfig(cache_prompt=True),
    )
    body = server.last.body
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1] == {
        "type": "text",
        "text": "q",
        "cache_control": {"type": "ephemeral"},
    }


async def test_thinking_returned_and_replayed(server: FakeAnthropic, model: Model) -> None:
    server.reply(
        message(
            [
                {"type": "thinking", "thinking": "2+2 is 4", "signature": "sig-abc"},
                {"type": "redacted_thinking", "data": "ENCRYPTED"},
                {"type": "text", "text": "4"},
            ]
        )
    )
    first = await model.generate(
        "2+2?", config=GenerateConfig(reasoning_effort="medium", max_tokens=1000)
    )
    assert server.last.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert server.last.body["max_tokens"] == 3048  # raised above the budget
    assert first.message.content[:2] == [
        ContentReasoning(reasoning="2+2 is 4", signature="sig-abc"),
        ContentReasoning(reasoning="ENCRYPTED", redacted=True),
    ]
    assert first.completion == "4"

    await model.generate(
        [ChatMessageUser(content="2+2?"), first.message, ChatMessageUser(content="and 3+3?")],
        config=GenerateConfig(reasoning_effort="high"),
    )
    assert server.last.body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert server.last.body["max_tokens"] == 16384  # already above the budget
    assert server.last.body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "2+2 is 4", "signature": "sig-abc"},
        {"type": "redacted_thinking", "data": "ENCRYPTED"},
        {"type": "text", "text": "4"},
    ]


async def test_thinking_with_temperature_is_rejected(model: Model) -> None:
    with pytest.raises(UnsupportedConfig, match="does not allow temperature"):
        await model.generate("x", config=GenerateConfig(reasoning_effort="low", temperature=0.5))


async def test_thinking_with_forced_tool_is_rejected(model: Model) -> None:
    with pytest.raises(UnsupportedConfig, match="only allows tool_choice auto or none"):
        await model.generate(
            "x", tools=[WEATHER], tool_choice="any", config=GenerateConfig(reasoning_effort="low")
        )


async def test_streaming_yields_text_deltas(server: FakeAnthropic, model: Model) -> None:
    server.reply_sse(stream_events(["Hel", "lo", " world"]))
    deltas = [d async for d in model.stream("Hi")]
    assert deltas == ["Hel", "lo", " world"]
    assert server.last.body["stream"] is True


async def test_stream_error_event_is_transient_and_retried(
    server: FakeAnthropic, model: Model
) -> None:
    server.reply_sse(
        [
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            )
        ]
    )
    server.reply_sse(stream_events(["ok"]))
    assert [d async for d in model.stream("Hi")] == ["ok"]
    assert len(server.requests) == 2
    assert (
        model.api.classify_error(AnthropicResponseError("overloaded_error", "x")).kind
        == "transient"
    )
    assert (
        model.api.classify_error(AnthropicResponseError("invalid_request_error", "x")).kind
        == "fatal"
    )


async def test_rate_limit_honours_retry_after(server: FakeAnthropic, model: Model) -> None:
    server.reply(
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        status=429,
        headers={"retry-after": "7"},
    )
    output = await model.generate("hi")
    assert output.completion == "Hello!"
    assert len(server.requests) == 2
    assert len(model.waits) == 1 and 7.0 <= model.waits[0] <= 7.7


async def test_overloaded_529_is_transient(server: FakeAnthropic, model: Model) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.reply(overloaded, status=529)
    server.reply("<html>bad gateway</html>", status=502)
    output = await model.generate("hi")
    assert output.completion == "Hello!"
    assert len(server.requests) == 3
    assert len(model.waits) == 2


async def test_malformed_success_body_is_transient(server: FakeAnthropic, model: Model) -> None:
    server.reply("not json at all")
    server.reply({"unexpected": True})
    output = await model.generate("hi")
    assert output.completion == "Hello!"
    assert len(server.requests) == 3


async def test_bad_request_is_fatal_with_provider_message(
    server: FakeAnthropic, model: Model
) -> None:
    server.reply(
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
        },
        status=400,
    )
    with pytest.raises(HTTPStatusError, match="max_tokens: too big") as info:
        await model.generate("hi")
    assert info.value.status == 400
    assert len(server.requests) == 1


async def test_connection_refused_is_transient(server: FakeAnthropic) -> None:
    await server.stop()
    async with get_model("anthropic/claude-test", base_url=server.url, api_key="k") as m:
        m.retry_policy.max_retries = 1

        async def no_sleep(_: float) -> None:
            return None

        m.sleep = no_sleep
        with pytest.raises(ConnectionError) as info:
            await m.generate("hi")
    assert [a["kind"] for a in info.value.gauge_attempts] == ["transient", "transient"]


async def test_unsupported_field_is_rejected(model: Model) -> None:
    with pytest.raises(UnsupportedConfig) as info:
        await model.generate("hi", config=GenerateConfig(num_choices=2))
    assert "'anthropic' does not support num_choices" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_key_names_the_env_var() -> None:
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        get_model("anthropic/claude-test")


async def test_env_key_and_base_url(monkeypatch: pytest.MonkeyPatch, server: FakeAnthropic) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    async with get_model("anthropic/claude-3-5-haiku") as m:
        await m.generate("hi")
    assert server.last.headers["x-api-key"] == "sk-env"
    assert server.last.body["max_tokens"] == 8192


def test_unknown_model_arg_is_rejected() -> None:
    with pytest.raises(ConfigError, match="anthropic does not take model args region; known: "):
        get_model("anthropic/claude-test", api_key="k", region="x")


def test_gauge_models_row() -> None:
    import json

    from click.testing import CliRunner

    from gauge.cli.main import cli

    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["provider"] == "anthropic")
    assert row["installed"] is True and row["extra"] is None
    assert row["needs_api_key"] is True
    assert row["api_key_vars"] == ["ANTHROPIC_API_KEY"]
    assert row["base_url_vars"] == ["ANTHROPIC_BASE_URL"]
    assert row["streaming"] is True
    assert {"top_k", "cache_prompt", "reasoning_effort", "stop_seqs"} <= set(row["honours"])
    assert "num_choices" not in row["honours"]
    text = CliRunner().invoke(cli, ["models"]).output
    assert "anthropic/  extra=-  installed" in text


async def test_tool_errors_and_tool_images(server: FakeAnthropic, model: Model) -> None:
    from gauge.model import ToolCallError

    await model.generate(
        [
            ChatMessageUser(content="q"),
            ChatMessageAssistant(
                content="",
                tool_calls=[ToolCall(id="t1", function="shot"), ToolCall(id="t2", function="calc")],
            ),
            ChatMessageTool(
                content=[ContentImage(image="data:image/png;base64,AAAA")],
                tool_call_id="t1",
            ),
            ChatMessageTool(
                content="",
                tool_call_id="t2",
                error=ToolCallError(type="timeout", message="calc timed out"),
            ),
        ]
    )
    assert server.last.body["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    }
                ],
            },
            {
                "type": "tool_result",
                "tool_use_id": "t2",
                "content": "calc timed out",
                "is_error": True,
            },
        ],
    }


async def test_extra_headers_and_body_are_forwarded(server: FakeAnthropic, model: Model) -> None:
    config = GenerateConfig(
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        extra_body={"metadata": {"user_id": "u1"}},
    )
    await model.generate("hi", config=config)
    assert server.last.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert server.last.headers["x-api-key"] == "sk-ant-test"
    assert server.last.body["metadata"] == {"user_id": "u1"}
