"""The /completions providers (openai-completions, openai-api-completions) via the fake server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gauge.errors import ConfigError, MissingAPIKey, UnsupportedConfig
from gauge.model import ChatMessageSystem, ChatMessageUser, GenerateConfig, ToolInfo, get_model
from gauge.testing import OpenAIServer


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(validate=True) as server:
        yield server
    assert server.validation_errors == []


async def test_openai_completions_through_base_url(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    config = GenerateConfig(max_tokens=3, logprobs=True, top_logprobs=2, num_choices=2)
    async with get_model("openai-completions/gpt-3.5-turbo-instruct") as model:
        output = await model.generate("the quick brown fox", config=config)
    request = server.requests[-1]
    assert request.path == "/v1/completions"
    assert request.body == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "the quick brown fox",
        "max_tokens": 3,
        "n": 2,
        "logprobs": 2,
    }
    assert "authorization" not in request.headers  # a local server needs no key
    assert [c.message.text for c in output.choices] == ["the quick brown"] * 2
    assert output.stop_reason == "max_tokens"
    logprobs = output.choices[0].logprobs
    assert logprobs is not None
    assert [t.token for t in logprobs.content] == ["the", " quick", " brown"]
    assert [t.token for t in logprobs.content[1].top_logprobs or []] == [" quick", " quick#1"]
    assert output.usage is not None and output.usage.input_tokens == 4


async def test_service_completions_env_and_streaming(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_VLLM_BASE_URL", server.url)
    monkeypatch.setenv("LOCAL_VLLM_API_KEY", "local-key")
    async with get_model("openai-api-completions/local-vllm/gpt2", echo=False) as model:
        deltas = [d async for d in model.stream("one two", config=GenerateConfig(top_k=5))]
        conversation = [ChatMessageSystem(content="Q:"), ChatMessageUser(content="A")]
        joined = await model.generate(conversation)
    assert deltas == ["one", " two"]
    streamed = server.requests[0]
    assert streamed.body["stream"] is True and streamed.body["top_k"] == 5
    assert streamed.body["echo"] is False
    assert streamed.headers["authorization"] == "Bearer local-key"
    assert server.requests[1].body["prompt"] == "Q:\n\nA"
    assert joined.completion == "Q:\n\nA"


def test_completions_against_openai_need_a_key() -> None:
    with pytest.raises(MissingAPIKey, match="OPENAI_API_KEY"):
        get_model("openai-completions/gpt-3.5-turbo-instruct")


async def test_completions_refuse_tools_and_chat_only_fields(server: OpenAIServer) -> None:
    async with get_model("openai-completions/m", base_url=server.url) as model:
        with pytest.raises(ConfigError, match="cannot take tools"):
            await model.generate("x", tools=[ToolInfo(name="t")])
        with pytest.raises(UnsupportedConfig, match="response_schema"):
            await model.generate(
                "x",
                config=GenerateConfig.model_validate(
                    {"response_schema": {"name": "s", "json_schema": {}}}
                ),
            )
    assert server.count == 0
    assert model.info()["supports_chat"] is False
