"""google/<model> (Gemini API and Vertex AI) against a fake server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fake_google import ACCESS_TOKEN, FakeGoogle, response

from gauge.errors import ConfigError, MissingAPIKey, UnsupportedConfig
from gauge.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ContentAudio,
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
from gauge.model.providers.google.request import clean_schema
from gauge.model.registry import is_importable

WEATHER = ToolInfo(
    name="weather",
    description="Weather in a city",
    parameters=ToolParams(
        properties={"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
        required=["city"],
    ),
)
GEN_PATH = "/v1beta/models/gemini-test:generateContent"


@pytest.fixture
async def server() -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle()
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
async def model(server: FakeGoogle) -> AsyncIterator[Model]:
    async with get_model("google/gemini-test", base_url=server.url, api_key="g-key") as m:
        yield m


async def test_plain_text_request_and_output(server: FakeGoogle, model: Model) -> None:
    output = await model.generate("Hello")
    assert server.last.path == GEN_PATH
    assert server.last.headers["x-goog-api-key"] == "g-key"
    assert server.last.body == {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    assert output.completion == "Hello!"
    assert output.stop_reason == "stop"
    assert output.model == "gemini-test-001"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens) == (8, 2)
    assert output.usage.total_tokens == 10


async def test_system_multi_turn_and_generation_config(server: FakeGoogle, model: Model) -> None:
    config = GenerateConfig(
        temperature=0.3,
        top_p=0.8,
        top_k=40,
        max_tokens=64,
        stop_seqs=["END"],
        seed=7,
        presence_penalty=0.5,
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
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "One"}]},
        {"role": "model", "parts": [{"text": "Ok"}]},
        {"role": "user", "parts": [{"text": "Two"}, {"text": "Three"}]},
    ]
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "topK": 40,
        "maxOutputTokens": 64,
        "seed": 7,
        "presencePenalty": 0.5,
        "stopSequences": ["END"],
    }


async def test_tool_call_round_trip_with_thought_signature(
    server: FakeGoogle, model: Model
) -> None:
    server.reply(
        response(
            [
                {
                    "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "c2lnLTE=",
                }
            ]
        )
    )
    first = await model.generate(
        "Weather in Oslo?", tools=[WEATHER], tool_choice=ToolFunction(name="weather")
    )
    body = server.last.body
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "description": "Weather in a city",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "unit": {"type": "string", "nullable": True},
                        },
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
    }
    assert first.stop_reason == "tool_calls"
    assert first.message.tool_calls == [
        ToolCall(id="weather_0", function="weather", arguments={"city": "Oslo"})
    ]

    server.reply(response("Sunny."))
    second = await model.generate(
        [
            ChatMessageUser(content="Weather in Oslo?"),
            first.message,
            ChatMessageTool(content="sunny, 20C", tool_call_id="weather_0"),
        ],
        tools=[WEATHER],
    )
    assert server.last.body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "c2lnLTE=",
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"content": "sunny, 20C"}}}
            ],
        },
    ]
    assert server.last.body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert second.completion == "Sunny."


async def test_media_inputs(server: FakeGoogle, model: Model) -> None:
    await model.generate(
        [
            ChatMessageUser(
                content=[
                    ContentText(text="Describe"),
                    ContentImage(image="data:image/jpeg;base64,/9j/4AAQ"),
                    ContentImage(image="https://example.com/cat.png"),
                    ContentAudio(audio="data:audio/wav;base64,UklGRg==", format="wav"),
                ]
            )
        ]
    )
    assert server.last.body["contents"][0]["parts"] == [
        {"text": "Describe"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


async def test_image_without_known_type_is_a_clear_error(model: Model) -> None:
    with pytest.raises(ConfigError, match="cannot tell the media type"):
        await model.generate(
            [ChatMessageUser(content=[ContentImage(image="https://example.com/img")])]
        )


async def test_candidates_and_logprobs(server: FakeGoogle, model: Model) -> None:
    body = response("A", avgLogprobs=-0.1)
    body["candidates"][0]["logprobsResult"] = {
        "chosenCandidates": [{"token": "A", "logProbability": -0.1}],
        "topCandidates": [
            {
                "candidates": [
                    {"token": "A", "logProbability": -0.1},
                    {"token": "B", "logProbability": -2.5},
                ]
            }
        ],
    }
    body["candidates"].append({**response("B")["candidates"][0], "index": 1})
    server.reply(body)
    output = await model.generate(
        "Pick", config=GenerateConfig(num_choices=2, logprobs=True, top_logprobs=2)
    )
    assert server.last.body["generationConfig"] == {
        "candidateCount": 2,
        "responseLogprobs": True,
        "logprobs": 2,
    }
    assert [c.message.text for c in output.choices] == ["A", "B"]
    logprobs = output.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content[0].token == "A"
    assert logprobs.content[0].logprob == -0.1
    assert [t.token for t in logprobs.content[0].top_logprobs or []] == ["A", "B"]
    assert output.choices[1].logprobs is None


async def test_safety_block_is_content_filter_with_category(
    server: FakeGoogle, model: Model
) -> None:
    ratings = [
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    ]
    body = response([], finish_reason="SAFETY", safetyRatings=ratings)
    del body["candidates"][0]["content"]
    server.reply(body)
    output = await model.generate("something risky")
    assert output.stop_reason == "content_filter"
    assert output.error == (
        "response blocked by the provider's filter: SAFETY (HARM_CATEGORY_DANGEROUS_CONTENT)"
    )
    assert output.metadata == {
        "content_filter": [
            {"finish_reason": "SAFETY", "categories": ["HARM_CATEGORY_DANGEROUS_CONTENT"]}
        ]
    }


async def test_blocked_prompt_is_content_filter(server: FakeGoogle, model: Model) -> None:
    server.reply(
        {
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    {
                        "category": "HARM_CATEGORY_HATE_SPEECH",
                        "probability": "HIGH",
                        "blocked": True,
                    }
                ],
            },
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        }
    )
    output = await model.generate("bad prompt")
    assert output.stop_reason == "content_filter"
    assert output.completion == ""
    assert (
        output.error
        == "prompt blocked by the provider's filter: SAFETY (HARM_CATEGORY_HATE_SPEECH)"
    )
    assert output.usage is not None and output.usage.input_tokens == 5


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "max_tokens"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "unknown"),
        ("OTHER", "unknown"),
    ],
)
async def test_stop_reasons(server: FakeGoogle, model: Model, wire: str, expected: str) -> None:
    server.reply(response("x", finish_reason=wire))
    assert (await model.generate("hi")).stop_reason == expected


async def test_usage_with_thoughts_and_cache(server: FakeGoogle, model: Model) -> None:
    usage = {
        "promptTokenCount": 100,
        "candidatesTokenCount": 10,
        "thoughtsTokenCount": 50,
        "cachedContentTokenCount": 60,
        "totalTokenCount": 160,
    }
    server.reply(
        response(
            [
                {"text": "plan it", "thought": True, "thoughtSignature": "c2ln"},
                {"text": "done"},
            ],
            usage=usage,
        )
    )
    output = await model.generate("hi")
    assert output.usage is not None
    assert output.usage.output_tokens == 60
    assert output.usage.reasoning_tokens == 50
    assert output.usage.input_tokens_cache_read == 60
    assert output.usage.total_tokens == 160
    assert output.message.content == [
        ContentReasoning(reasoning="plan it", signature="c2ln"),
        ContentText(text="done"),
    ]
    assert output.completion == "done"


async def test_response_schema_is_json_mode(server: FakeGoogle, model: Model) -> None:
    schema = ResponseSchema(
        name="answer",
        json_schema={
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    )
    await model.generate("n?", config=GenerateConfig(response_schema=schema))
    assert server.last.body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
    }


async def test_streaming(server: FakeGoogle, model: Model) -> None:
    deltas = [d async for d in model.stream("Hi")]
    assert deltas == ["Hel", "lo!"]
    assert server.last.path == "/v1beta/models/gemini-test:streamGenerateContent"
    assert server.last.query == {"alt": "sse"}


async def test_stream_error_chunk_is_classified(server: FakeGoogle, model: Model) -> None:
    recording(model)
    server.reply_sse([{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}])
    assert [d async for d in model.stream("Hi")] == ["Hel", "lo!"]
    assert len(server.requests) == 2


async def test_resource_exhausted_honours_retry_delay(server: FakeGoogle, model: Model) -> None:
    waits = recording(model)
    server.reply(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
                ],
            }
        },
        status=429,
    )
    server.reply({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}, status=503)
    output = await model.generate("hi")
    assert output.completion == "Hello!"
    assert len(server.requests) == 3
    assert 3.0 <= waits[0] <= 3.3
    assert len(waits) == 2


async def test_invalid_argument_is_fatal(server: FakeGoogle, model: Model) -> None:
    server.reply(
        {
            "error": {
                "code": 400,
                "message": "Invalid value at 'contents'",
                "status": "INVALID_ARGUMENT",
            }
        },
        status=400,
    )
    with pytest.raises(HTTPStatusError, match="Invalid value at 'contents'"):
        await model.generate("hi")
    assert len(server.requests) == 1


async def test_unsupported_field_is_rejected(model: Model) -> None:
    with pytest.raises(UnsupportedConfig, match="'google' does not support reasoning_effort"):
        await model.generate("hi", config=GenerateConfig(reasoning_effort="high"))


def test_missing_key_names_the_env_vars() -> None:
    with pytest.raises(MissingAPIKey, match="GOOGLE_API_KEY or GEMINI_API_KEY"):
        get_model("google/gemini-test")


def test_versioned_base_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    model = get_model("google/gemini-test", base_url="http://127.0.0.1:1/v1alpha")
    assert model.api._prefix == "models/"  # type: ignore[attr-defined]


def test_clean_schema_keeps_the_openapi_subset() -> None:
    schema = {
        "type": "object",
        "title": "T",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "const": "x"}},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null", "$ref": "#/x"}]},
        },
        "additionalProperties": False,
    }
    assert clean_schema(schema) == {
        "type": "object",
        "title": "T",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    }


# -- Vertex AI -----------------------------------------------------------------------------

needs_google_auth = pytest.mark.skipif(
    not is_importable("google.auth"),
    reason="Vertex AI needs google-auth: pip install 'gauge[google]'",
)


def service_account_file(tmp_path: Path, server: FakeGoogle, project: str = "sa-proj") -> Path:
    """A freshly generated service-account key whose token_uri is the fake server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    server.public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": f"gauge-test@{project}.iam.gserviceaccount.com",
                "client_id": "1234",
                "token_uri": f"{server.url}/token",
            }
        )
    )
    return path


@needs_google_auth
async def test_vertex_signs_a_jwt_and_sends_the_token(server: FakeGoogle, tmp_path: Path) -> None:
    key_file = service_account_file(tmp_path, server)
    async with get_model(
        "google/gemini-test",
        base_url=server.url,
        project="my-proj",
        location="europe-west4",
        credentials=str(key_file),
    ) as model:
        first = await model.generate("Hello")
        await model.generate("Again")
    assert first.completion == "Hello!"
    token_requests = [r for r in server.requests if r.path == "/token"]
    assert len(token_requests) == 1  # the token is cached until it expires
    claims = server.token_claims[0]
    assert claims["iss"] == "gauge-test@sa-proj.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert server.last.path == (
        "/v1/projects/my-proj/locations/europe-west4/publishers/google/models/"
        "gemini-test:generateContent"
    )
    assert server.last.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-goog-api-key" not in server.last.headers


@needs_google_auth
async def test_vertex_from_environment(
    server: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = service_account_file(tmp_path, server, project="env-proj")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-east1")
    monkeypatch.setenv("GOOGLE_BASE_URL", server.url)
    async with get_model("google/gemini-test") as model:
        recording(model)
        deltas = [d async for d in model.stream("Hi")]
    assert deltas == ["Hel", "lo!"]
    assert server.last.path == (
        "/v1/projects/env-proj/locations/us-east1/publishers/google/models/"
        "gemini-test:streamGenerateContent"
    )


@needs_google_auth
async def test_vertex_bad_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    async with get_model(
        "google/gemini-test", project="p", credentials=str(tmp_path / "missing.json")
    ) as model:
        with pytest.raises(ConfigError) as info:
            await model.generate("hi")
    message = str(info.value)
    assert "could not load Google credentials" in message and "-M credentials=PATH" in message
    assert "\n" not in message


@needs_google_auth
def test_vertex_default_host() -> None:
    model = get_model("google/gemini-2.0-flash", project="p", location="asia-east1", vertex="true")
    assert model.api.base_url == "https://asia-east1-aiplatform.googleapis.com"


def test_gauge_models_row() -> None:
    from click.testing import CliRunner

    from gauge.cli.main import cli

    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.output) if r["provider"] == "google")
    assert row["extra"] == "google" and row["installed"] is True
    assert row["needs_api_key"] is False  # Vertex AI authenticates without a key
    assert row["api_key_vars"] == ["GOOGLE_API_KEY", "GEMINI_API_KEY"]
    assert row["streaming"] is True
    assert {"top_k", "seed", "num_choices", "logprobs"} <= set(row["honours"])
    assert "reasoning_effort" not in row["honours"]


async def test_tool_error_result(server: FakeGoogle, model: Model) -> None:
    from gauge.model import ToolCallError

    await model.generate(
        [
            ChatMessageUser(content="q"),
            ChatMessageAssistant(content="", tool_calls=[ToolCall(id="c1", function="calc")]),
            ChatMessageTool(
                content="",
                tool_call_id="c1",
                error=ToolCallError(type="timeout", message="calc timed out"),
            ),
        ]
    )
    assert server.last.body["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "calc", "response": {"error": "calc timed out"}}}],
    }


@pytest.fixture
def server_url_and_key(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A FakeGoogle served from its own thread and loop, for tests that run several loops."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    fake = FakeGoogle()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake.url, service_account_file(tmp_path, fake)
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert len([r for r in fake.requests if r.path == "/token"]) == 1


@needs_google_auth
def test_vertex_token_shared_across_event_loops(server_url_and_key: tuple[str, Path]) -> None:
    import asyncio

    url, key_file = server_url_and_key
    model = get_model("google/gemini-test", base_url=url, project="p", credentials=str(key_file))

    async def many() -> list[str]:
        outputs = await asyncio.gather(*(model.generate("hi") for _ in range(5)))
        await model.close()  # this loop's HTTP session ends with the loop
        return [o.completion for o in outputs]

    # Two loops, five concurrent calls each: one token fetch in all (checked by the fixture).
    assert asyncio.run(many()) == ["Hello!"] * 5
    assert asyncio.run(many()) == ["Hello!"] * 5


async def test_safety_settings_model_arg(server: FakeGoogle) -> None:
    async with get_model(
        "google/gemini-test", base_url=server.url, api_key="k", safety_settings="BLOCK_NONE"
    ) as model:
        await model.generate("hi")
    assert server.last.body["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"},
        {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"},
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_NONE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE"},
    ]


def test_bad_safety_settings_and_unknown_args_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="threshold such as BLOCK_NONE"):
        get_model("google/gemini-test", api_key="k", safety_settings="none please")
    with pytest.raises(ConfigError, match="known: project, location"):
        get_model("google/gemini-test", api_key="k", region="x")
