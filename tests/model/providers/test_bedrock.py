"""bedrock/<model-id> against a fake Bedrock Runtime on 127.0.0.1.

Requests are really signed (botocore SigV4 with dummy credentials from the env,
a shared credentials file, or a credential_process) and the fake recomputes and
checks every signature.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The fake verifies signatures with botocore: these tests need gauge[bedrock] installed.
pytest.importorskip("botocore", reason="bedrock tests need botocore: pip install 'gauge[bedrock]'")

from fake_bedrock import FakeBedrock, Reply, converse_reply, error_reply, text_stream

from gauge.errors import ConfigError, UnsupportedConfig
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentImage, ContentReasoning, ContentText
from gauge.model.factory import get_model
from gauge.model.messages import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.model import Model
from gauge.model.providers.bedrock import BedrockError, MissingAWSCredentials
from gauge.model.tools import ToolCall, ToolCallError, ToolFunction, ToolInfo, ToolParams

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
LLAMA = "us.meta.llama3-2-90b-instruct-v1:0"
MISTRAL = "mistral.mistral-large-2407-v1:0"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUg=="
WEATHER = ToolInfo(
    name="weather",
    description="Weather for a city",
    parameters=ToolParams(properties={"city": {"type": "string"}}, required=["city"]),
)


class RecordSleep:
    """A backoff sleep that records its waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS settings from the machine: no env vars, no ~/.aws files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name == "BEDROCK_BASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


@pytest.fixture
async def server(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock({"AKIDTEST": "test-secret", "AKIDFILE": "file-secret"})
    await fake.start()
    monkeypatch.setenv("BEDROCK_BASE_URL", fake.base_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield fake
    await fake.stop()


@pytest.fixture
def env_keys(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")


_opened: list[Model] = []


@pytest.fixture(autouse=True)
async def close_models() -> AsyncIterator[None]:
    """Close every model a test opened, even when the test failed halfway."""
    yield
    while _opened:
        await _opened.pop().close()


async def open_model(name: str = CLAUDE, **kwargs: object) -> Model:
    model = get_model(f"bedrock/{name}", memoize=False, **kwargs)  # type: ignore[arg-type]
    model.sleep = RecordSleep()
    _opened.append(model)
    return model


def scope(request: dict[str, object]) -> list[str]:
    auth = str(request["headers"]["Authorization"])  # type: ignore[index]
    credential = auth.split("Credential=")[1].split(",")[0]
    return credential.split("/")


@pytest.mark.usefixtures("env_keys")
async def test_plain_text_is_signed_with_sigv4(server: FakeBedrock) -> None:
    server.replies.append(
        converse_reply(
            [{"text": "Paris."}],
            usage={
                "inputTokens": 12,
                "outputTokens": 3,
                "totalTokens": 15,
                "cacheReadInputTokens": 4,
            },
        )
    )
    model = await open_model()
    output = await model.generate("Capital of France?")
    await model.close()
    assert output.completion == "Paris."
    assert output.stop_reason == "stop"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens) == (12, 3)
    assert (output.usage.total_tokens, output.usage.input_tokens_cache_read) == (15, 4)
    assert output.metadata == {"stop_reason": "end_turn", "latency_ms": 42}
    sent = server.requests[0]
    assert sent["signature"] == "valid"
    access_key, _, region, service, _ = scope(sent)
    assert (access_key, region, service) == ("AKIDTEST", "us-east-1", "bedrock")
    # The model id's ':' travels percent-encoded, exactly as signed.
    assert sent["path"] == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert sent["model_id"] == CLAUDE
    assert sent["json"] == {
        "messages": [{"role": "user", "content": [{"text": "Capital of France?"}]}]
    }


async def test_a_wrong_secret_fails_the_servers_signature_check(
    server: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    model = await open_model()
    with pytest.raises(BedrockError) as info:
        await model.generate("x")
    await model.close()
    assert server.requests[0]["signature"] == "signature mismatch"
    assert info.value.code == "InvalidSignatureException"
    assert model.api.classify_error(info.value).kind == "fatal"
    assert len(server.requests) == 1


async def test_session_token_is_sent_and_signed(
    server: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-123")
    model = await open_model()
    await model.generate("x")
    await model.close()
    sent = server.requests[0]
    assert sent["headers"]["X-Amz-Security-Token"] == "session-token-123"
    assert "x-amz-security-token" in sent["headers"]["Authorization"]
    assert sent["signature"] == "valid"


async def test_profile_from_shared_credentials_and_config_files(
    server: FakeBedrock, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    (aws_env / "aws-credentials").write_text(
        "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = nope\n"
        "[evals]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"
    )
    (aws_env / "aws-config").write_text("[profile evals]\nregion = eu-west-3\n")
    model = await open_model(profile="evals")
    await model.generate("x")
    await model.close()
    sent = server.requests[0]
    assert sent["signature"] == "valid"
    access_key, _, region, _, _ = scope(sent)
    assert (access_key, region) == ("AKIDFILE", "eu-west-3")


async def test_aws_profile_env_var_selects_the_profile(
    server: FakeBedrock, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (aws_env / "aws-credentials").write_text(
        "[evals]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "evals")
    model = await open_model(region="ap-south-1")
    await model.generate("x")
    await model.close()
    assert server.requests[0]["signature"] == "valid"
    assert scope(server.requests[0])[0] == "AKIDFILE"
    assert scope(server.requests[0])[2] == "ap-south-1"


async def test_expiring_credentials_are_refreshed(
    server: FakeBedrock, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # credential_process with an expiry inside botocore's refresh window: every
    # request must fetch fresh keys (a new access key id each time).
    counter = aws_env / "count"
    script = aws_env / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=120)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': f'AKIDPROC{n}',\n"
        "  'SecretAccessKey': f'proc-secret-{n}', 'SessionToken': f'tok{n}',\n"
        "  'Expiration': exp.isoformat()}))\n"
    )
    (aws_env / "aws-config").write_text(
        f"[profile proc]\ncredential_process = {sys.executable} {script}\n"
    )
    server.secrets.update({f"AKIDPROC{n}": f"proc-secret-{n}" for n in range(1, 10)})
    model = await open_model(profile="proc")
    await model.generate("x")
    await model.generate("y")
    await model.close()
    first, second = (int(scope(r)[0].removeprefix("AKIDPROC")) for r in server.requests)
    assert second > first  # fetched again, not reused from the first request
    assert [r["signature"] for r in server.requests] == ["valid", "valid"]
    assert server.requests[1]["headers"]["X-Amz-Security-Token"] == f"tok{second}"


async def test_missing_credentials_is_a_one_line_error(server: FakeBedrock) -> None:
    model = await open_model()
    with pytest.raises(MissingAWSCredentials) as info:
        await model.generate("x")
    await model.close()
    message = str(info.value)
    assert "\n" not in message
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message
    assert model.api.classify_error(info.value).kind == "fatal"
    assert server.requests == []


def test_missing_region_names_what_to_set(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="set AWS_DEFAULT_REGION"):
        get_model(f"bedrock/{CLAUDE}")


def test_unknown_profile_fails_at_get_model(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="AWS profile not found"):
        get_model(f"bedrock/{CLAUDE}", region="us-east-1", profile="nope")


def test_unknown_model_arg_is_rejected(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="region= and profile=, not regoin"):
        get_model(f"bedrock/{CLAUDE}", regoin="us-east-1")


def test_broken_aws_config_file_is_a_one_line_error(aws_env: Path) -> None:
    (aws_env / "aws-config").write_text("[profile broken\nregion = us-east-1\n")
    with pytest.raises(ConfigError, match="cannot read the AWS config") as info:
        get_model(f"bedrock/{CLAUDE}", region="us-east-1")
    assert "\n" not in str(info.value)


def test_aws_region_is_the_last_fallback(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    assert get_model(f"bedrock/{CLAUDE}").api.base_url.endswith("sa-east-1.amazonaws.com")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    model = get_model(f"bedrock/{CLAUDE}", memoize=False)
    assert model.api.base_url == "https://bedrock-runtime.us-west-2.amazonaws.com"


def test_default_endpoint_follows_the_region(aws_env: Path) -> None:
    model = get_model(f"bedrock/{CLAUDE}", region="eu-central-1")
    assert model.api.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"


async def test_bearer_token_replaces_sigv4(
    server: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key")
    model = await open_model()
    await model.generate("x")
    await model.close()
    assert server.requests[0]["headers"]["Authorization"] == "Bearer bedrock-api-key"
    assert server.requests[0]["signature"] == "bearer"


@pytest.mark.usefixtures("env_keys")
async def test_system_multi_turn_and_alternation(server: FakeBedrock) -> None:
    model = await open_model()
    await model.generate(
        [
            ChatMessageSystem(content="Be terse."),
            ChatMessageUser(content="Hi"),
            ChatMessageUser(content="again"),
            ChatMessageAssistant(content="Hello."),
            ChatMessageSystem(content="No emoji."),
            ChatMessageUser(content="Bye"),
        ],
        config=GenerateConfig(max_tokens=64, temperature=0.2, top_p=0.9, stop_seqs=["END"]),
    )
    await model.close()
    body = server.requests[0]["json"]
    assert body["system"] == [{"text": "Be terse."}, {"text": "No emoji."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}, {"text": "again"}]},
        {"role": "assistant", "content": [{"text": "Hello."}]},
        {"role": "user", "content": [{"text": "Bye"}]},
    ]
    assert body["inferenceConfig"] == {
        "maxTokens": 64,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert server.requests[0]["signature"] == "valid"


@pytest.mark.usefixtures("env_keys")
async def test_tool_call_round_trip(server: FakeBedrock) -> None:
    server.replies.append(
        converse_reply(
            [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {"city": "Oslo"}}},
            ],
            stop_reason="tool_use",
        )
    )
    model = await open_model()
    first = await model.generate("Weather in Oslo?", tools=[WEATHER])
    assert first.stop_reason == "tool_calls"
    assert first.completion == "Let me check."
    call = first.message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function, call.arguments) == ("tu_1", "weather", {"city": "Oslo"})
    assert server.requests[0]["json"]["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather",
                    "description": "Weather for a city",
                    "inputSchema": {
                        "json": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                            "additionalProperties": False,
                        }
                    },
                }
            }
        ]
    }

    server.replies.append(converse_reply([{"text": "3 degrees."}]))
    history = [
        ChatMessageUser(content="Weather in Oslo?"),
        first.message,
        ChatMessageTool(content="3 degrees", tool_call_id="tu_1", function="weather"),
        ChatMessageUser(content="And in words?"),
    ]
    second = await model.generate(history, tools=[WEATHER])
    await model.close()
    assert second.completion == "3 degrees."
    messages = server.requests[1]["json"]["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tu_1", "name": "weather", "input": {"city": "Oslo"}}},
        ],
    }
    # The tool result and the next user message share one user turn (roles must alternate).
    assert messages[2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "3 degrees"}]}},
            {"text": "And in words?"},
        ],
    }


@pytest.mark.usefixtures("env_keys")
async def test_tool_errors_carry_status_for_anthropic_only(server: FakeBedrock) -> None:
    history = [
        ChatMessageUser(content="x"),
        ChatMessageAssistant(content="", tool_calls=[ToolCall(id="t", function="weather")]),
        ChatMessageTool(
            content="", tool_call_id="t", error=ToolCallError(type="timeout", message="timed out")
        ),
    ]
    for name in (CLAUDE, LLAMA):
        model = await open_model(name)
        await model.generate(history, tools=[WEATHER])
        await model.close()
    claude, llama = (r["json"]["messages"][2]["content"][0]["toolResult"] for r in server.requests)
    assert claude == {"toolUseId": "t", "content": [{"text": "timed out"}], "status": "error"}
    assert llama == {"toolUseId": "t", "content": [{"text": "timed out"}]}


@pytest.mark.usefixtures("env_keys")
async def test_tool_choice_mapping(server: FakeBedrock) -> None:
    model = await open_model()
    await model.generate("x", tools=[WEATHER], tool_choice="any")
    await model.generate("x", tools=[WEATHER], tool_choice=ToolFunction(name="weather"))
    await model.generate("x", tools=[WEATHER], tool_choice="none")
    # A history with tool blocks needs a toolConfig even when no tools are passed.
    history = [
        ChatMessageUser(content="x"),
        ChatMessageAssistant(content="", tool_calls=[ToolCall(id="t", function="weather")]),
        ChatMessageTool(content="sunny", tool_call_id="t"),
    ]
    await model.generate(history)
    await model.close()
    bodies = [r["json"] for r in server.requests]
    assert bodies[0]["toolConfig"]["toolChoice"] == {"any": {}}
    assert bodies[1]["toolConfig"]["toolChoice"] == {"tool": {"name": "weather"}}
    assert "toolConfig" not in bodies[2]
    assert bodies[3]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "weather"
    assert "toolChoice" not in bodies[3]["toolConfig"]


@pytest.mark.usefixtures("env_keys")
async def test_image_input_is_sent_as_bytes(server: FakeBedrock) -> None:
    model = await open_model()
    message = ChatMessageUser(
        content=[
            ContentText(text="What is this?"),
            ContentImage(image=f"data:image/jpg;base64,{PNG_B64}"),
        ]
    )
    await model.generate([message])
    with pytest.raises(
        ConfigError, match=r"takes image bytes, not 'https://example\.com/cat\.png'"
    ):
        await model.generate(
            [ChatMessageUser(content=[ContentImage(image="https://example.com/cat.png")])]
        )
    with pytest.raises(ConfigError, match="png, jpeg, gif or webp images, not image/tiff"):
        await model.generate(
            [ChatMessageUser(content=[ContentImage(image=f"data:image/tiff;base64,{PNG_B64}")])]
        )
    await model.close()
    assert len(server.requests) == 1
    assert server.requests[0]["json"]["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": "jpeg", "source": {"bytes": PNG_B64}}},
    ]


@pytest.mark.parametrize(
    ("aws", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "max_tokens"),
        ("tool_use", "tool_calls"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
        ("model_context_window_exceeded", "model_length"),
        ("something_new", "unknown"),
    ],
)
@pytest.mark.usefixtures("env_keys")
async def test_stop_reasons(server: FakeBedrock, aws: str, expected: str) -> None:
    server.replies.append(converse_reply(stop_reason=aws))
    model = await open_model()
    output = await model.generate("x")
    await model.close()
    assert output.stop_reason == expected
    assert (output.error is not None) == (expected == "content_filter")


@pytest.mark.usefixtures("env_keys")
async def test_top_k_goes_to_anthropic_only_and_extra_body_merges(server: FakeBedrock) -> None:
    model = await open_model()
    config = GenerateConfig(
        top_k=20,
        extra_body={
            "additionalModelRequestFields": {
                "thinking": {"type": "enabled", "budget_tokens": 1024}
            },
            "guardrailConfig": {"guardrailIdentifier": "g1", "guardrailVersion": "1"},
        },
    )
    await model.generate("x", config=config)
    await model.close()
    body = server.requests[0]["json"]
    assert body["additionalModelRequestFields"] == {
        "top_k": 20,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    assert body["guardrailConfig"] == {"guardrailIdentifier": "g1", "guardrailVersion": "1"}
    llama = await open_model(LLAMA)
    with pytest.raises(ConfigError, match="top_k only to Anthropic models"):
        await llama.generate("x", config=GenerateConfig(top_k=20))
    await llama.close()
    assert len(server.requests) == 1


@pytest.mark.usefixtures("env_keys")
async def test_cache_prompt_adds_cache_points_where_the_model_takes_them(
    server: FakeBedrock,
) -> None:
    server.replies.append(
        converse_reply(
            usage={
                "inputTokens": 10,
                "outputTokens": 2,
                "totalTokens": 2060,
                "cacheReadInputTokens": 0,
                "cacheWriteInputTokens": 2048,
            }
        )
    )
    conversation = [
        ChatMessageSystem(content="You are a weather bot."),
        ChatMessageUser(content="Oslo?"),
        ChatMessageAssistant(content="Which day?"),
        ChatMessageUser(content="Today."),
    ]
    model = await open_model()
    output = await model.generate(
        conversation, tools=[WEATHER], config=GenerateConfig(cache_prompt=True)
    )
    assert output.usage is not None and output.usage.input_tokens_cache_write == 2048
    body = server.requests[0]["json"]
    point = {"cachePoint": {"type": "default"}}
    assert body["system"] == [{"text": "You are a weather bot."}, point]
    assert body["toolConfig"]["tools"][-1] == point
    assert body["messages"][0]["content"] == [{"text": "Oslo?"}]
    assert body["messages"][2]["content"] == [{"text": "Today."}, point]
    llama = await open_model(LLAMA)
    await llama.generate(conversation, config=GenerateConfig(cache_prompt="auto"))
    assert "cachePoint" not in str(server.requests[1]["json"])
    with pytest.raises(ConfigError, match="caching works with Anthropic and Amazon Nova"):
        await llama.generate(conversation, config=GenerateConfig(cache_prompt=True))
    assert len(server.requests) == 2


@pytest.mark.usefixtures("env_keys")
async def test_reasoning_is_returned_and_replayed_for_anthropic(server: FakeBedrock) -> None:
    server.replies.append(
        converse_reply(
            [
                {"reasoningContent": {"reasoningText": {"text": "2+2=4", "signature": "sig=="}}},
                {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
                {"text": "4"},
            ]
        )
    )
    model = await open_model()
    first = await model.generate("2+2?")
    parts = first.message.content
    assert isinstance(parts, list)
    assert parts[0] == ContentReasoning(reasoning="2+2=4", signature="sig==")
    assert parts[1] == ContentReasoning(reasoning="b3BhcXVl", redacted=True)
    assert first.completion == "4"
    await model.generate(
        [ChatMessageUser(content="2+2?"), first.message, ChatMessageUser(content="ok")]
    )
    await model.close()
    assert server.requests[1]["json"]["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "2+2=4", "signature": "sig=="}}},
        {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
        {"text": "4"},
    ]
    # A non-Anthropic model gets the answer without the reasoning.
    mistral = await open_model(MISTRAL)
    await mistral.generate(
        [ChatMessageUser(content="2+2?"), first.message, ChatMessageUser(content="ok")]
    )
    await mistral.close()
    assert server.requests[2]["json"]["messages"][1]["content"] == [{"text": "4"}]


@pytest.mark.usefixtures("env_keys")
async def test_streaming_decodes_the_event_stream(server: FakeBedrock) -> None:
    server.replies.append(Reply(events=text_stream(["Hel", "lo", " there"])))
    model = await open_model()
    chunks = [chunk async for chunk in model.stream("Say hello")]
    await model.close()
    assert chunks == ["Hel", "lo", " there"]
    sent = server.requests[0]
    assert sent["path"].endswith("/converse-stream")
    assert sent["signature"] == "valid"
    assert sent["headers"]["Accept"] == "application/vnd.amazon.eventstream"


@pytest.mark.usefixtures("env_keys")
async def test_stream_throttling_event_is_retried_before_any_text(server: FakeBedrock) -> None:
    server.replies.append(
        Reply(
            events=[
                ("messageStart", {"role": "assistant"}),
                ("!throttlingException", {"message": "slow down"}),
            ]
        )
    )
    server.replies.append(Reply(events=text_stream(["fine"])))
    model = await open_model()
    chunks = [chunk async for chunk in model.stream("x")]
    await model.close()
    assert chunks == ["fine"]
    assert len(server.requests) == 2


@pytest.mark.usefixtures("env_keys")
async def test_stream_http_error_keeps_awss_message(server: FakeBedrock) -> None:
    server.replies.append(error_reply("AccessDeniedException", 403, "You don't have access."))
    model = await open_model()
    with pytest.raises(BedrockError, match="You don't have access") as info:
        async for _ in model.stream("x"):
            pass
    assert info.value.code == "AccessDeniedException"
    assert len(server.requests) == 1  # fatal: not retried


@pytest.mark.usefixtures("env_keys")
async def test_stream_error_after_text_is_raised(server: FakeBedrock) -> None:
    events = [*text_stream(["partial"])[:2], ("!modelStreamErrorException", {"message": "boom"})]
    server.replies.append(Reply(events=events))
    model = await open_model()
    chunks: list[str] = []
    with pytest.raises(BedrockError, match="ModelStreamErrorException") as info:
        async for chunk in model.stream("x"):
            chunks.append(chunk)
    await model.close()
    assert chunks == ["partial"]
    assert "boom" in str(info.value)
    assert len(server.requests) == 1


@pytest.mark.usefixtures("env_keys")
async def test_throttling_is_rate_limited_and_retried(server: FakeBedrock) -> None:
    server.replies += [
        error_reply("ThrottlingException", 429, "Too many requests, please wait.", "3"),
        error_reply("ServiceUnavailableException", 503, "Service unavailable."),
        converse_reply([{"text": "done"}]),
    ]
    model = await open_model()
    output = await model.generate("x")
    await model.close()
    assert output.completion == "done"
    assert len(server.requests) == 3
    waits = model.sleep.waits  # type: ignore[attr-defined]
    assert len(waits) == 2 and 3.0 <= waits[0] <= 3.3


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 429, "rate_limit"),
        ("ModelNotReadyException", 429, "transient"),
        ("ServiceUnavailableException", 503, "transient"),
        ("InternalServerException", 500, "transient"),
        ("ModelTimeoutException", 408, "transient"),
        ("ValidationException", 400, "fatal"),
        ("AccessDeniedException", 403, "fatal"),
        ("ResourceNotFoundException", 404, "fatal"),
    ],
)
@pytest.mark.usefixtures("env_keys")
async def test_error_classification(server: FakeBedrock, code: str, status: int, kind: str) -> None:
    server.replies.append(error_reply(code, status, f"AWS says {code}"))
    model = await open_model()
    with pytest.raises(BedrockError) as info:
        await model.generate("x", config=GenerateConfig(max_retries=0))
    await model.close()
    assert info.value.code == code
    assert str(info.value) == f"bedrock {code} (HTTP {status}): AWS says {code}"
    assert model.api.classify_error(info.value).kind == kind


@pytest.mark.usefixtures("env_keys")
async def test_validation_error_is_not_retried(server: FakeBedrock) -> None:
    server.replies.append(
        error_reply("ValidationException", 400, "The model returned the following errors: bad")
    )
    model = await open_model()
    with pytest.raises(BedrockError, match="The model returned the following errors: bad"):
        await model.generate("x")
    await model.close()
    assert len(server.requests) == 1


@pytest.mark.usefixtures("env_keys")
async def test_connection_refused_is_transient(aws_env: Path) -> None:
    model = await open_model(base_url="http://127.0.0.1:9", region="us-east-1")
    with pytest.raises(ConnectionError) as info:
        await model.generate("x", config=GenerateConfig(max_retries=0))
    await model.close()
    assert model.api.classify_error(info.value).kind == "transient"


@pytest.mark.usefixtures("env_keys")
async def test_unsupported_field_is_a_clear_error(server: FakeBedrock) -> None:
    model = await open_model()
    with pytest.raises(UnsupportedConfig, match="'bedrock' does not support seed"):
        await model.generate("x", config=GenerateConfig(seed=1))
    await model.close()
    assert server.requests == []


def test_gauge_models_shows_the_bedrock_row(capsys: pytest.CaptureFixture[str]) -> None:
    from gauge.cli.main import main

    main(["models", "--json"])
    rows = {row["provider"]: row for row in json.loads(capsys.readouterr().out)}
    bedrock = rows["bedrock"]
    assert bedrock["extra"] == "bedrock"
    assert bedrock["installed"] is True
    assert bedrock["needs_api_key"] is False
    assert bedrock["api_key_vars"] == ["AWS_BEARER_TOKEN_BEDROCK"]
    assert bedrock["base_url_vars"] == ["BEDROCK_BASE_URL"]
    assert bedrock["default_base_url"] == "https://bedrock-runtime.{region}.amazonaws.com"
    assert bedrock["streaming"] is True
    assert "top_k" in bedrock["honours"] and "seed" not in bedrock["honours"]


def test_event_stream_error_frames_and_corruption() -> None:
    from fake_bedrock import event_frame, frame

    from gauge.model.providers._http import HTTPConnectionError
    from gauge.model.providers.bedrock.response import EventDecoder

    decoder = EventDecoder()
    good = event_frame("contentBlockDelta", {"delta": {"text": "hi"}})
    # Byte by byte: a frame is yielded only once it is complete.
    events = [e for byte in range(len(good)) for e in decoder.feed(good[byte : byte + 1])]
    assert events == [("contentBlockDelta", {"delta": {"text": "hi"}})]
    error = frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "oops"},
        b"",
    )
    with pytest.raises(BedrockError, match="InternalFailure") as info:
        list(EventDecoder().feed(error))
    assert str(info.value) == "bedrock InternalFailure (HTTP 200): oops"
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF  # break the message CRC
    with pytest.raises(HTTPConnectionError, match="unreadable event stream") as bad:
        list(EventDecoder().feed(bytes(corrupt)))
    from gauge.model.providers.bedrock.errors import classify

    assert classify(bad.value).kind == "transient"
