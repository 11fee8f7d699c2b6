"""Wire features through the fake server: tools, logprobs, n, media, schema, reasoning."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gauge.model import (
    ChatMessageAssistant,
    ChatMessageTool,
    ChatMessageUser,
    ContentAudio,
    ContentImage,
    ContentText,
    GenerateConfig,
    ResponseSchema,
    ToolInfo,
    ToolParams,
    get_model,
)
from gauge.testing import OpenAIServer

WEATHER = ToolInfo(
    name="weather",
    description="Current weather for a city.",
    parameters=ToolParams(properties={"city": {"type": "string"}}, required=["city"]),
)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(validate=True) as server:
        yield server
    assert server.validation_errors == []


def weather_call(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Answer the first turn with a tool call, and the turn with the result with text."""
    if body["messages"][-1]["role"] == "tool":
        return None
    call = {
        "id": "call_w1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
    return {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}
        ],
    }


async def test_tool_call_round_trip(server: OpenAIServer) -> None:
    server.responder = weather_call
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        first = await model.generate(
            "Weather in Paris?", tools=[WEATHER], config=GenerateConfig(parallel_tool_calls=False)
        )
        assert first.stop_reason == "tool_calls"
        call = first.message.tool_calls[0]  # type: ignore[index]
        assert (call.id, call.function, call.arguments) == ("call_w1", "weather", {"city": "Paris"})
        conversation = [
            ChatMessageUser(content="Weather in Paris?"),
            first.message,
            ChatMessageTool(content="18C, sunny", tool_call_id=call.id, function="weather"),
        ]
        second = await model.generate(conversation, tools=[WEATHER])
    sent_first = server.requests[0].body
    assert sent_first["tool_choice"] == "auto"
    assert sent_first["parallel_tool_calls"] is False
    assert sent_first["tools"][0]["function"]["name"] == "weather"
    sent = server.requests[1].body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_w1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_w1", "content": "18C, sunny"}
    assert second.stop_reason == "stop"
    assert second.completion == "Weather in Paris?"  # the fake echoes the last user message


async def test_forced_tool_choice(server: OpenAIServer) -> None:
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        output = await model.generate("go", tools=[WEATHER], tool_choice="any")
    assert server.requests[-1].body["tool_choice"] == "required"
    assert output.message.tool_calls[0].function == "weather"  # type: ignore[index]


async def test_logprobs_top_logprobs_and_n(server: OpenAIServer) -> None:
    config = GenerateConfig(logprobs=True, top_logprobs=2, num_choices=3, seed=1)
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        output = await model.generate("red green", config=config)
    assert len(output.choices) == 3
    logprobs = output.choices[2].logprobs
    assert logprobs is not None
    assert [(t.token, t.logprob) for t in logprobs.content] == [("red", -0.1), (" green", -0.2)]
    top = logprobs.content[1].top_logprobs
    assert top is not None and [t.token for t in top] == [" green", " green#1"]
    assert logprobs.content[0].bytes == list(b"red")
    body = server.requests[-1].body
    assert (body["logprobs"], body["top_logprobs"], body["n"], body["seed"]) == (True, 2, 3, 1)


async def test_images_and_audio_reach_the_server(server: OpenAIServer, tmp_path: Path) -> None:
    image = tmp_path / "pixel.jpg"
    image.write_bytes(b"\xff\xd8 jpeg")
    message = ChatMessageUser(
        content=[
            ContentText(text="What is this?"),
            ContentImage(image=str(image), detail="high"),
            ContentAudio(audio="data:audio/wav;base64,UklGRg==", format="wav"),
        ]
    )
    async with get_model("openai/gpt-4o-audio-preview", base_url=server.url, api_key="k") as m:
        output = await m.generate([message])
    assert output.completion == "What is this?"
    parts = server.requests[-1].body["messages"][0]["content"]
    jpeg = base64.b64encode(b"\xff\xd8 jpeg").decode()
    assert parts[1]["image_url"] == {"url": f"data:image/jpeg;base64,{jpeg}", "detail": "high"}
    assert parts[2]["input_audio"] == {"data": "UklGRg==", "format": "wav"}


async def test_response_schema(server: OpenAIServer) -> None:
    schema = ResponseSchema(
        name="person",
        json_schema={"type": "object", "properties": {"name": {"type": "string"}}},
        description="A person.",
    )
    server.reply = '{"name": "Ada"}'
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        output = await model.generate("Who?", config=GenerateConfig(response_schema=schema))
    assert output.completion == '{"name": "Ada"}'
    assert server.requests[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "person",
            "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
            "description": "A person.",
        },
    }


async def test_reasoning_model_fields_and_reasoning_output(server: OpenAIServer) -> None:
    config = GenerateConfig(max_tokens=50, reasoning_effort="high")
    async with get_model("openai/o3-mini", base_url=server.url, api_key="k") as model:
        output = await model.generate("think", config=config)
        plain = await model.generate("no effort", config=GenerateConfig(max_tokens=50))
    body = server.requests[0].body
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high"
    assert "max_completion_tokens" in server.requests[1].body  # o-series by name
    assert output.message.reasoning == "Reasoning at high effort."
    assert output.completion == "think"
    assert output.usage is not None and output.usage.reasoning_tokens == 4
    assert plain.message.reasoning is None


async def test_non_reasoning_openai_model_sends_max_tokens(server: OpenAIServer) -> None:
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        output = await model.generate("a b c", config=GenerateConfig(max_tokens=2))
    assert server.requests[-1].body["max_tokens"] == 2
    assert output.completion == "a b" and output.stop_reason == "max_tokens"


async def test_vllm_sampling_extras(server: OpenAIServer) -> None:
    config = GenerateConfig(top_k=20, best_of=2, extra_body={"min_tokens": 1})
    async with get_model(
        "vllm/Qwen/Qwen2.5-0.5B", base_url=server.url, min_p=0.05, repetition_penalty=1.1
    ) as model:
        await model.generate("x", config=config)
    body = server.requests[-1].body
    assert (body["top_k"], body["best_of"], body["min_p"], body["repetition_penalty"]) == (
        20,
        2,
        0.05,
        1.1,
    )
    assert body["min_tokens"] == 1


async def test_openrouter_reasoning_object(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "k")
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.url)
    config = GenerateConfig(reasoning_effort="low")
    async with get_model("openrouter/deepseek/deepseek-r1") as model:
        await model.generate("x", config=config)
    body = server.requests[-1].body
    assert body["reasoning"] == {"effort": "low"} and "reasoning_effort" not in body


async def test_together_integer_logprobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Together's chat API takes `logprobs` as a count, outside OpenAI's schema: no validation.
    async with OpenAIServer() as server:
        monkeypatch.setenv("TOGETHER_API_KEY", "k")
        monkeypatch.setenv("TOGETHER_BASE_URL", server.url)

        def together(path: str, body: dict[str, Any]) -> dict[str, Any]:
            logprobs = {"tokens": ["Hi"], "token_logprobs": [-0.3], "top_logprobs": None}
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "eos",
                "logprobs": logprobs,
            }
            return {"id": "t", "model": body["model"], "choices": [choice]}

        server.responder = together
        async with get_model("together/meta-llama/Llama-3-8b") as model:
            output = await model.generate("x", config=GenerateConfig(top_logprobs=3))
    assert server.requests[-1].body["logprobs"] == 3
    assert output.stop_reason == "stop"
    assert output.choices[0].logprobs.content[0].logprob == -0.3  # type: ignore[union-attr]


async def test_assistant_prefill_history_is_sent(server: OpenAIServer) -> None:
    history = [
        ChatMessageUser(content="Say A"),
        ChatMessageAssistant(content="A"),
        ChatMessageUser(content="Say B"),
    ]
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        output = await model.generate(history, config=GenerateConfig(system_message="Terse."))
    assert output.completion == "Say B"
    assert [m["role"] for m in server.requests[-1].body["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


async def test_stream_consumer_stopping_early_releases_the_connection(
    server: OpenAIServer,
) -> None:
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        async for delta in model.stream("first second third"):
            assert delta == "first"
            break
        assert (await model.generate("again")).completion == "again"
    assert server.count == 2
