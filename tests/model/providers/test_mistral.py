"""mistral/<model> (La Plateforme and Azure) against a fake server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_mistral import FakeMistral, chunk, completion

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
    ResponseSchema,
    ToolCall,
    ToolFunction,
    ToolInfo,
    ToolParams,
    get_model,
)
from gauge.model.model import Model
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.mistral.request import tool_call_id

WEATHER = ToolInfo(
    name="weather",
    description="Weather in a city",
    parameters=ToolParams(properties={"city": {"type": "string"}}, required=["city"]),
)


@pytest.fixture
async def server() -> AsyncIterator[FakeMistral]:
    fake = FakeMistral()
    await fake.start()
    yield fake
    await fake.stop()


def recording(model: Model) -> list[float]:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    model.sleep = record
    return waits


@pytest.fixture
async def model(server: FakeMistral) -> AsyncIterator[Model]:
    async with get_model("mistral/mistral-test", base_url=f"{server.url}/v1", api_key="m-key") as m:
        yield m


async def test_plain_text_request_and_output(server: FakeMistral, model: Model) -> None:
    output = await model.generate("Hello")
    assert server.last.path == "/v1/chat/completions"
    assert server.last.headers["authorization"] == "Bearer m-key"
    assert server.last.body == {
        "model": "mistral-test",
        "messages": [{"role": "user", "content": "Hello"}],
    }
    assert output.completion == "Hello!"
    assert output.stop_reason == "stop"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens, output.usage.total_tokens) == (
        9,
        2,
        11,
    )


async def test_system_multi_turn_and_sampling(server: FakeMistral, model: Model) -> None:
    config = GenerateConfig(
        temperature=0.1, top_p=0.5, max_tokens=20, seed=42, stop_seqs=["\n\n"], num_choices=2
    )
    await model.generate(
        [
            ChatMessageSystem(content="Be brief."),
            ChatMessageUser(content="One"),
            ChatMessageAssistant(content="Ok"),
            ChatMessageUser(content="Two"),
            ChatMessageUser(content="Three"),
        ],
        config=config,
    )
    body = server.last.body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Ok"},
        {"role": "user", "content": "Two\nThree"},
    ]
    assert body["random_seed"] == 42
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["n"]) == (
        0.1,
        0.5,
        20,
        2,
    )
    assert body["stop"] == ["\n\n"]
    assert "seed" not in body


async def test_tool_call_round_trip(server: FakeMistral, model: Model) -> None:
    server.reply(
        completion(
            content="",
            finish_reason="tool_calls",
            tool_calls=[
                {
                    "id": "abcDEF123",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        )
    )
    first = await model.generate(
        "Weather in Oslo?",
        tools=[WEATHER],
        tool_choice=ToolFunction(name="weather"),
        config=GenerateConfig(parallel_tool_calls=False),
    )
    body = server.last.body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "description": "Weather in a city",
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert body["parallel_tool_calls"] is False
    assert first.stop_reason == "tool_calls"
    assert first.message.tool_calls == [
        ToolCall(id="abcDEF123", function="weather", arguments={"city": "Oslo"})
    ]

    server.reply(completion("Sunny."))
    second = await model.generate(
        [
            ChatMessageUser(content="Weather in Oslo?"),
            first.message,
            ChatMessageTool(content="sunny", tool_call_id="abcDEF123", function="weather"),
        ],
        tools=[WEATHER],
        tool_choice="any",
    )
    assert server.last.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "abcDEF123",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "abcDEF123", "name": "weather"},
    ]
    assert server.last.body["tool_choice"] == "any"
    assert second.completion == "Sunny."


async def test_foreign_tool_call_ids_are_mapped_consistently(
    server: FakeMistral, model: Model
) -> None:
    await model.generate(
        [
            ChatMessageUser(content="q"),
            ChatMessageAssistant(
                content="", tool_calls=[ToolCall(id="toolu_01XYZ", function="calc")]
            ),
            ChatMessageTool(content="4", tool_call_id="toolu_01XYZ"),
        ]
    )
    sent = server.last.body["messages"]
    mapped = sent[1]["tool_calls"][0]["id"]
    assert len(mapped) == 9 and mapped.isalnum()
    assert sent[2]["tool_call_id"] == mapped == tool_call_id("toolu_01XYZ")


async def test_bad_tool_arguments_are_reported(server: FakeMistral, model: Model) -> None:
    call = {"id": "abcDEF123", "function": {"name": "weather", "arguments": "{not json"}}
    server.reply(completion("", "tool_calls", tool_calls=[call]))
    output = await model.generate("x", tools=[WEATHER])
    tool_call = (output.message.tool_calls or [])[0]
    assert tool_call.arguments == {}
    assert tool_call.parse_error is not None and "not valid JSON" in tool_call.parse_error


async def test_image_input(server: FakeMistral, model: Model) -> None:
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
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
        {"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]


async def test_json_mode_from_response_schema(server: FakeMistral, model: Model) -> None:
    server.reply(completion('{"n": 4}'))
    schema = ResponseSchema(
        name="answer",
        json_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
        strict=True,
    )
    output = await model.generate("2+2", config=GenerateConfig(response_schema=schema))
    assert server.last.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "strict": True,
        },
    }
    assert output.completion == '{"n": 4}'


async def test_thinking_chunks_become_reasoning(server: FakeMistral, model: Model) -> None:
    server.reply(
        completion(
            [
                {"type": "thinking", "thinking": [{"type": "text", "text": "2+2=4"}]},
                {"type": "text", "text": "4"},
            ]
        )
    )
    output = await model.generate("2+2")
    assert output.message.content == [ContentReasoning(reasoning="2+2=4"), ContentText(text="4")]
    assert output.completion == "4"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("stop", "stop"),
        ("length", "max_tokens"),
        ("model_length", "model_length"),
        ("tool_calls", "tool_calls"),
        ("error", "unknown"),
    ],
)
async def test_stop_reasons(server: FakeMistral, model: Model, wire: str, expected: str) -> None:
    server.reply(completion("x", finish_reason=wire))
    output = await model.generate("hi")
    assert output.stop_reason == expected
    assert (output.error is not None) == (wire == "error")


async def test_streaming(server: FakeMistral, model: Model) -> None:
    assert [d async for d in model.stream("Hi")] == ["Hel", "lo!"]
    assert server.last.body["stream"] is True


async def test_stream_with_thinking_chunks_yields_text_only(
    server: FakeMistral, model: Model
) -> None:
    thinking = chunk("")
    thinking["choices"][0]["delta"]["content"] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}
    ]
    server.reply_sse([thinking, chunk("4", "stop"), "[DONE]"])
    assert [d async for d in model.stream("2+2")] == ["4"]


async def test_rate_limit_honours_retry_after(server: FakeMistral, model: Model) -> None:
    waits = recording(model)
    server.reply(
        {"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited"},
        status=429,
        headers={"Retry-After": "2"},
    )
    server.reply({"object": "error", "message": "Service unavailable"}, status=503)
    output = await model.generate("hi")
    assert output.completion == "Hello!"
    assert len(server.requests) == 3
    assert 2.0 <= waits[0] <= 2.2 and len(waits) == 2


async def test_malformed_body_is_transient(server: FakeMistral, model: Model) -> None:
    recording(model)
    server.reply({"nothing": "here"})
    assert (await model.generate("hi")).completion == "Hello!"
    assert len(server.requests) == 2


async def test_validation_error_is_fatal_with_details(server: FakeMistral, model: Model) -> None:
    server.reply(
        {
            "object": "error",
            "message": {
                "detail": [
                    {
                        "type": "less_than_equal",
                        "loc": ["body", "temperature"],
                        "msg": "Input should be <= 1.5",
                    }
                ]
            },
            "type": "invalid_request_error",
        },
        status=422,
    )
    with pytest.raises(HTTPStatusError, match=r"body.temperature: Input should be <= 1.5"):
        await model.generate("hi")
    assert len(server.requests) == 1


async def test_unsupported_field_is_rejected(model: Model) -> None:
    with pytest.raises(UnsupportedConfig, match="'mistral' does not support logprobs, top_k"):
        await model.generate("hi", config=GenerateConfig(top_k=3, logprobs=True))


def test_missing_key_names_both_env_vars() -> None:
    with pytest.raises(MissingAPIKey, match="MISTRAL_API_KEY or AZURE_MISTRAL_API_KEY"):
        get_model("mistral/mistral-large-latest")


async def test_azure_key_and_endpoint(server: FakeMistral, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_MISTRAL_API_KEY", "az-key")
    monkeypatch.setenv("AZURE_MISTRAL_BASE_URL", server.url)  # no path: /v1 is added
    async with get_model("mistral/mistral-large-2411", safe_prompt="true") as m:
        await m.generate("hi")
    assert server.last.path == "/v1/chat/completions"
    assert server.last.headers["authorization"] == "Bearer az-key"
    assert server.last.body["safe_prompt"] is True


def test_azure_key_without_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_MISTRAL_API_KEY", "az-key")
    with pytest.raises(ConfigError, match="set AZURE_MISTRAL_BASE_URL"):
        get_model("mistral/mistral-large-2411")


def test_unknown_model_arg_is_rejected() -> None:
    with pytest.raises(ConfigError, match="known: safe_prompt"):
        get_model("mistral/m", api_key="k", project="x")


def test_gauge_models_row() -> None:
    import json

    from click.testing import CliRunner

    from gauge.cli.main import cli

    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["provider"] == "mistral")
    assert row["installed"] is True and row["extra"] is None
    assert row["api_key_vars"] == ["MISTRAL_API_KEY", "AZURE_MISTRAL_API_KEY"]
    assert row["base_url_vars"] == [
        "MISTRAL_BASE_URL",
        "AZURE_MISTRAL_BASE_URL",
        "AZUREAI_MISTRAL_BASE_URL",
    ]
    assert row["default_base_url"] == "https://api.mistral.ai/v1"
    assert {"seed", "response_schema", "num_choices"} <= set(row["honours"])
    assert "top_k" not in row["honours"]
