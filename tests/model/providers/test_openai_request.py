"""Messages, tools and config -> OpenAI request bodies (each checked against the spec)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ContentAudio,
    ContentImage,
    ContentReasoning,
    ContentText,
    ContentVideo,
    GenerateConfig,
    ResponseSchema,
    ToolCall,
    ToolCallError,
    ToolFunction,
    ToolInfo,
    ToolParams,
)
from gauge.model.providers.openai_compat.completions import completion_body
from gauge.model.providers.openai_compat.request import Dialect, chat_body, chat_message
from gauge.testing import validate_request

ADD = ToolInfo(
    name="add",
    description="Add two numbers.",
    parameters=ToolParams(
        properties={"a": {"type": "number"}, "b": {"type": "number"}}, required=["a", "b"]
    ),
)


def valid(body: dict[str, Any], path: str = "/v1/chat/completions") -> dict[str, Any]:
    problem = validate_request(path, body)
    assert problem is None, problem
    return body


def test_plain_text_body_is_minimal() -> None:
    body = valid(chat_body("gpt-4o", [ChatMessageUser(content="Hi")], [], "none", GenerateConfig()))
    assert body == {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}


def test_every_sampling_field_in_wire_spelling() -> None:
    config = GenerateConfig(
        max_tokens=10,
        temperature=0.5,
        top_p=0.9,
        stop_seqs=["\n\n", "END"],
        seed=7,
        frequency_penalty=0.1,
        presence_penalty=-0.2,
        logit_bias={50256: -100.0, 11: 5.0},
        num_choices=3,
        logprobs=True,
        top_logprobs=4,
        reasoning_effort="low",
        response_schema=ResponseSchema(
            name="answer",
            json_schema={"type": "object", "properties": {"x": {"type": "integer"}}},
            strict=True,
        ),
    )
    body = valid(chat_body("m", [ChatMessageUser(content="Hi")], [], "none", config))
    assert body["max_tokens"] == 10
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["stop"] == ["\n\n", "END"]
    assert body["seed"] == 7
    assert body["frequency_penalty"] == 0.1 and body["presence_penalty"] == -0.2
    assert body["logit_bias"] == {"50256": -100, "11": 5}
    assert isinstance(body["logit_bias"]["11"], int)  # the spec types biases as integers
    assert body["n"] == 3
    assert body["logprobs"] is True and body["top_logprobs"] == 4
    assert body["reasoning_effort"] == "low"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "strict": True,
        },
    }


def test_fractional_logit_bias_is_sent_unchanged() -> None:
    # vLLM and others take float biases; gauge never rounds a user's value.
    config = GenerateConfig(logit_bias={11: 2.5})
    assert chat_body("m", [ChatMessageUser(content="Hi")], [], "none", config)["logit_bias"] == {
        "11": 2.5
    }


def test_max_completion_tokens_dialect_and_int_logprobs() -> None:
    config = GenerateConfig(max_tokens=5, top_logprobs=3)
    messages = [ChatMessageUser(content="Hi")]
    reasoning = chat_body("o3", messages, [], "none", config, Dialect("max_completion_tokens"))
    assert "max_tokens" not in valid(reasoning) and reasoning["max_completion_tokens"] == 5
    together = chat_body("m", messages, [], "none", config, Dialect(logprobs_style="int"))
    assert together["logprobs"] == 3 and "top_logprobs" not in together


def test_vllm_fields_model_args_and_extra_body_order() -> None:
    config = GenerateConfig(top_k=40, best_of=2, extra_body={"min_p": 0.2, "echo": False})
    extra = {"min_p": 0.05, "repetition_penalty": 1.1}
    body = chat_body("m", [ChatMessageUser(content="Hi")], [], "none", config, extra=extra)
    assert body["top_k"] == 40 and body["best_of"] == 2
    assert body["repetition_penalty"] == 1.1
    assert body["min_p"] == 0.2  # extra_body wins over model args
    assert body["echo"] is False


def test_conversation_with_tool_round_trip() -> None:
    messages = [
        ChatMessageSystem(content="Be terse."),
        ChatMessageUser(content="What is 1 + 2?"),
        ChatMessageAssistant(
            content=[ContentReasoning(reasoning="I should add."), ContentText(text="Adding.")],
            tool_calls=[ToolCall(id="call_1", function="add", arguments={"a": 1, "b": 2})],
        ),
        ChatMessageTool(content="3", tool_call_id="call_1", function="add"),
        ChatMessageTool(
            content="",
            tool_call_id="call_2",
            error=ToolCallError(type="timeout", message="took too long"),
        ),
    ]
    config = GenerateConfig(parallel_tool_calls=False)
    body = valid(chat_body("m", messages, [ADD], "auto", config))
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is 1 + 2?"},
        {
            "role": "assistant",
            "content": "Adding.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a":1,"b":2}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "3"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: took too long"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two numbers.",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False


def test_tool_choice_spellings() -> None:
    user = [ChatMessageUser(content="Hi")]
    config = GenerateConfig()
    assert chat_body("m", user, [ADD], "any", config)["tool_choice"] == "required"
    assert chat_body("m", user, [ADD], "none", config)["tool_choice"] == "none"
    named = valid(chat_body("m", user, [ADD], ToolFunction(name="add"), config))
    assert named["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    with pytest.raises(ConfigError, match="needs tools but none were given"):
        chat_body("m", user, [], ToolFunction(name="add"), config)
    with pytest.raises(ConfigError, match="tool_choice='any' needs tools"):
        chat_body("m", user, [], "any", config)


def test_assistant_tool_call_without_text_sends_null_content() -> None:
    message = ChatMessageAssistant(content="", tool_calls=[ToolCall(id="c", function="f")])
    assert chat_message(message)["content"] is None


def test_images_and_audio_parts(tmp_path: Path) -> None:
    png = tmp_path / "dot.png"
    png.write_bytes(b"\x89PNG fake")
    wav = tmp_path / "tone.wav"
    wav.write_bytes(b"RIFF fake")
    message = ChatMessageUser(
        content=[
            ContentText(text="Describe these."),
            ContentImage(image="https://example.com/cat.jpg", detail="low"),
            ContentImage(image=str(png)),
            ContentAudio(audio=str(wav), format="wav"),
            ContentAudio(audio="data:audio/mp3;base64,QUJD", format="mp3"),
        ]
    )
    body = valid(chat_body("gpt-4o", [message], [], "none", GenerateConfig()))
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Describe these."}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
    }
    encoded_png = base64.b64encode(b"\x89PNG fake").decode()
    assert parts[2]["image_url"]["url"] == f"data:image/png;base64,{encoded_png}"
    assert parts[3] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(b"RIFF fake").decode(), "format": "wav"},
    }
    assert parts[4]["input_audio"] == {"data": "QUJD", "format": "mp3"}


def test_bad_media_is_a_clear_error(tmp_path: Path) -> None:
    missing = ChatMessageUser(content=[ContentImage(image=str(tmp_path / "nope.png"))])
    with pytest.raises(ConfigError, match="not a URL, data URI or existing file"):
        chat_body("m", [missing], [], "none", GenerateConfig())
    audio_url = ChatMessageUser(content=[ContentAudio(audio="https://x/a.wav", format="wav")])
    with pytest.raises(ConfigError, match="download it first"):
        chat_body("m", [audio_url], [], "none", GenerateConfig())


def test_video_only_where_the_dialect_takes_it() -> None:
    video = ChatMessageUser(content=[ContentVideo(video="https://x/v.mp4", format="mp4")])
    with pytest.raises(ConfigError, match="does not accept video"):
        chat_body("m", [video], [], "none", GenerateConfig())
    body = chat_body("m", [video], [], "none", GenerateConfig(), Dialect(video=True))
    assert body["messages"][0]["content"] == [
        {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}
    ]


def test_completion_body_prompt_and_fields() -> None:
    messages = [ChatMessageSystem(content="You complete."), ChatMessageUser(content="1 2 3")]
    config = GenerateConfig(max_tokens=4, logprobs=True, best_of=2, num_choices=2, stop_seqs=["."])
    body = valid(completion_body("m", messages, config), "/v1/completions")
    assert body == {
        "model": "m",
        "prompt": "You complete.\n\n1 2 3",
        "max_tokens": 4,
        "stop": ["."],
        "n": 2,
        "best_of": 2,
        "logprobs": 1,
    }
    single = completion_body("m", [ChatMessageUser(content="Once")], GenerateConfig(top_logprobs=5))
    assert single["prompt"] == "Once" and single["logprobs"] == 5


def test_completion_body_refuses_media() -> None:
    image = ChatMessageUser(content=[ContentImage(image="https://x/a.png")])
    with pytest.raises(ConfigError, match="text only"):
        completion_body("m", [image], GenerateConfig())
