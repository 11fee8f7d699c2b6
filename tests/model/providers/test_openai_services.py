"""Every OpenAI-compatible provider through the fake server: URLs, headers, env vars, fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gauge.errors import ConfigError, MissingAPIKey, MissingExtra, ModelNameError, UnsupportedConfig
from gauge.model import GenerateConfig, ToolInfo, ToolParams, get_model
from gauge.model.providers.openai_compat.services import is_reasoning_model
from gauge.testing import OpenAIServer


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(validate=True) as server:
        yield server
    assert server.validation_errors == []


@dataclass
class Case:
    model: str
    key_var: str | None
    base_var: str
    wire_model: str
    key_required: bool = True


CASES = [
    Case("openai/gpt-4o-mini", "OPENAI_API_KEY", "OPENAI_BASE_URL", "gpt-4o-mini"),
    Case(
        "together/meta-llama/Llama-3-8b",
        "TOGETHER_API_KEY",
        "TOGETHER_BASE_URL",
        "meta-llama/Llama-3-8b",
    ),
    Case("groq/llama-3.1-8b-instant", "GROQ_API_KEY", "GROQ_BASE_URL", "llama-3.1-8b-instant"),
    Case("grok/grok-3-mini", "GROK_API_KEY", "GROK_BASE_URL", "grok-3-mini"),
    Case(
        "fireworks/accounts/fireworks/models/x",
        "FIREWORKS_API_KEY",
        "FIREWORKS_BASE_URL",
        "accounts/fireworks/models/x",
    ),
    Case("deepseek/deepseek-chat", "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "deepseek-chat"),
    Case(
        "openrouter/anthropic/claude-3.5",
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
        "anthropic/claude-3.5",
    ),
    Case(
        "cf/meta/llama-3.1-8b-instruct",
        "CLOUDFLARE_API_TOKEN",
        "CLOUDFLARE_BASE_URL",
        "@cf/meta/llama-3.1-8b-instruct",
    ),
    Case("ollama/llama3.2", "OLLAMA_API_KEY", "OLLAMA_BASE_URL", "llama3.2", key_required=False),
    Case(
        "vllm/Qwen/Qwen2.5-0.5B",
        "VLLM_API_KEY",
        "VLLM_BASE_URL",
        "Qwen/Qwen2.5-0.5B",
        key_required=False,
    ),
    Case(
        "openai-api/my-server/llama-3",
        "MY_SERVER_API_KEY",
        "MY_SERVER_BASE_URL",
        "llama-3",
        key_required=False,
    ),
    Case("azureai/Llama-3.3-70B", "AZUREAI_API_KEY", "AZUREAI_BASE_URL", "Llama-3.3-70B"),
]


def configure(case: Case, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    base = server.url.removesuffix("/v1") if case.model.startswith("azureai/") else server.url
    monkeypatch.setenv(case.base_var, base)
    if case.key_var:
        monkeypatch.setenv(case.key_var, "sk-test-123")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.model.split("/")[0])
async def test_chat_through_base_url_env(
    case: Case, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(case, server, monkeypatch)
    async with get_model(case.model) as model:
        output = await model.generate("hello wide world")
    assert output.completion == "hello wide world"
    assert output.model == case.wire_model
    assert output.usage is not None and output.usage.input_tokens == 3
    request = server.requests[-1]
    assert request.body["model"] == case.wire_model
    assert request.body["messages"] == [{"role": "user", "content": "hello wide world"}]
    if case.model.startswith("azureai/"):
        assert request.path == "/chat/completions"
        assert request.query == {"api-version": "2024-05-01-preview"}
        assert request.headers["api-key"] == "sk-test-123"
        assert "authorization" not in request.headers
    else:
        assert request.path == "/v1/chat/completions"
        assert request.headers.get("authorization") == "Bearer sk-test-123"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.model.split("/")[0])
async def test_streaming_through_every_provider(
    case: Case, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(case, server, monkeypatch)
    async with get_model(case.model) as model:
        deltas = [delta async for delta in model.stream("one two three")]
    assert deltas == ["one", " two", " three"]
    body = server.requests[-1].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.model.split("/")[0])
async def test_tools_logprobs_n_and_retry_after_through_every_provider(
    case: Case, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(case, server, monkeypatch)
    tool = ToolInfo(name="lookup", parameters=ToolParams(properties={"q": {"type": "string"}}))
    async with get_model(case.model) as model:
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        model.sleep = sleep
        server.script(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "3"})
        called = await model.generate("find it", tools=[tool], tool_choice="any")
        honours = model.api.honours
        # Together spells logprobs as a count, outside OpenAI's schema: see test_openai_features.
        wants_logprobs = "logprobs" in honours and not case.model.startswith("together/")
        config = GenerateConfig(
            logprobs=True if wants_logprobs else None,
            num_choices=2 if "num_choices" in honours else None,
        )
        answer = await model.generate("x y", config=config)
    assert 3.0 <= waits[0] <= 3.3 and len(waits) == 1
    assert called.stop_reason == "tool_calls"
    assert called.message.tool_calls is not None
    assert called.message.tool_calls[0].function == "lookup"
    sent = server.requests[-2].body
    assert sent["tool_choice"] == "required" and sent["tools"][0]["function"]["name"] == "lookup"
    assert len(answer.choices) == (2 if "num_choices" in honours else 1)
    if wants_logprobs:
        logprobs = answer.choices[0].logprobs
        assert logprobs is not None and [t.token for t in logprobs.content] == ["x", " y"]


@pytest.mark.parametrize("case", [c for c in CASES if c.key_required], ids=lambda c: c.model)
def test_missing_key_names_the_variable(
    case: Case, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(case.base_var, server.url)
    with pytest.raises(MissingAPIKey) as caught:
        get_model(case.model)
    message = str(caught.value)
    assert case.key_var is not None and case.key_var in message
    assert "\n" not in message


@pytest.mark.parametrize("case", [c for c in CASES if not c.key_required], ids=lambda c: c.model)
async def test_keyless_providers_send_no_authorization(
    case: Case, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(case.base_var, server.url)
    async with get_model(case.model) as model:
        assert (await model.generate("hi")).completion == "hi"
    assert "authorization" not in server.requests[-1].headers


def test_ollama_defaults_to_localhost() -> None:
    model = get_model("ollama/llama3.2")
    assert model.api.base_url == "http://localhost:11434/v1"
    assert get_model("openai/gpt-4o", api_key="k").api.base_url == "https://api.openai.com/v1"


def test_vllm_without_base_url_routes_to_the_engine_and_says_what_to_set() -> None:
    # No server known: `vllm/` means the in-process engine, absent here (no vllm, no GPU).
    with pytest.raises(MissingExtra, match="set VLLM_BASE_URL") as caught:
        get_model("vllm/Qwen/Qwen2.5-0.5B")
    assert "\n" not in str(caught.value)


async def test_vllm_base_url_argument(server: OpenAIServer) -> None:
    async with get_model("vllm/m", base_url=server.url) as model:
        assert (await model.generate("x")).completion == "x"


def test_openai_api_needs_service_and_base_url() -> None:
    with pytest.raises(ModelNameError, match="openai-api/<service>/<model>"):
        get_model("openai-api/just-a-model")
    with pytest.raises(ConfigError, match="set LOCAL_BASE_URL"):
        get_model("openai-api/local/m")


def test_cloudflare_builds_its_url_from_the_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "t")
    with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID"):
        get_model("cf/meta/llama-3.1-8b-instruct")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc123")
    model = get_model("cf/meta/llama-3.1-8b-instruct")
    assert model.api.base_url == "https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1"


def test_azureai_needs_its_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREAI_API_KEY", "k")
    with pytest.raises(ConfigError, match="AZUREAI_BASE_URL"):
        get_model("azureai/Llama-3.3-70B")


async def test_azureai_forwards_model_args_with_pass_through(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREAI_API_KEY", "az-key")
    monkeypatch.setenv("AZUREAI_BASE_URL", server.url.removesuffix("/v1"))
    async with get_model("azureai/Mistral-large", safe_prompt=True, api_version="2024-08-01") as m:
        await m.generate("hi")
    request = server.requests[-1]
    assert request.body["safe_prompt"] is True
    assert "api_version" not in request.body
    assert request.query == {"api-version": "2024-08-01"}
    assert request.headers["extra-parameters"] == "pass-through"


async def test_azure_openai_mode_url_and_headers(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")  # present, but Azure mode wins
    monkeypatch.setenv("AZUREAI_OPENAI_API_KEY", "azure-key")
    monkeypatch.setenv("AZUREAI_OPENAI_BASE_URL", server.url.removesuffix("/v1") + "/openai/")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")
    async with get_model("openai/my-gpt4o-deployment") as model:
        output = await model.generate("deploy me")
    assert output.completion == "deploy me"
    request = server.requests[-1]
    assert request.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert request.query == {"api-version": "2024-06-01"}
    assert request.headers["api-key"] == "azure-key"
    assert "authorization" not in request.headers


def test_azure_openai_key_without_endpoint_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREAI_OPENAI_API_KEY", "azure-key")
    with pytest.raises(ConfigError, match="AZUREAI_OPENAI_BASE_URL is not"):
        get_model("openai/gpt-4o")


async def test_openai_org_and_project_headers(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    async with get_model("openai/gpt-4o", base_url=server.url, api_key="k") as model:
        await model.generate("x", config=GenerateConfig(extra_headers={"X-Trace": "t1"}))
    headers = server.requests[-1].headers
    assert headers["openai-organization"] == "org-1"
    assert headers["openai-project"] == "proj-1"
    assert headers["x-trace"] == "t1"


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("groq/llama-3.1-8b-instant", "logprobs", True),
        ("groq/llama-3.1-8b-instant", "num_choices", 2),
        ("deepseek/deepseek-chat", "response_schema", None),
        ("azureai/m", "num_choices", 2),
        ("cf/m", "stop_seqs", ["x"]),
        ("openai/gpt-4o", "top_k", 5),
    ],
)
async def test_unsupported_field_is_a_one_line_error(
    model: str, field: str, value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("GROQ_API_KEY", "DEEPSEEK_API_KEY", "AZUREAI_API_KEY", "CLOUDFLARE_API_TOKEN"):
        monkeypatch.setenv(var, "k")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("AZUREAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "a")
    if field == "response_schema":
        value = {"name": "x", "json_schema": {"type": "object"}}
    config = GenerateConfig.model_validate({field: value})
    async with get_model(model) as m:
        with pytest.raises(UnsupportedConfig) as caught:
            await m.generate("hi", config=config)
    message = str(caught.value)
    assert field in message and "\n" not in message


def test_reasoning_model_names() -> None:
    assert is_reasoning_model("o3-mini") and is_reasoning_model("gpt-5-nano")
    assert is_reasoning_model("o1") and not is_reasoning_model("gpt-4o")
