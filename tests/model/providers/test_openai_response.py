"""OpenAI response bodies and stream chunks -> ModelOutput."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from gauge.model import (
    ChatCompletionChoice,
    ChatMessageAssistant,
    ContentReasoning,
    ContentText,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    ToolCall,
    TopLogprob,
)
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.openai_compat.response import (
    MalformedResponse,
    chat_output,
    chunk_text,
    completion_output,
)


def body(*choices: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": list(choices),
        "usage": usage,
    }


def choice(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "index": 0,
        "message": {"role": "assistant", **message},
        "finish_reason": finish,
        **extra,
    }


def test_text_output_equals_the_validated_model() -> None:
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    output = chat_output(body(choice({"content": "Hello."}), usage=usage), "gpt-4o")
    expected = ModelOutput(
        model="gpt-4o-2024-08-06",
        choices=[
            ChatCompletionChoice(
                message=ChatMessageAssistant(
                    content="Hello.", model="gpt-4o-2024-08-06", source="generate"
                ),
                stop_reason="stop",
            )
        ],
        usage=ModelUsage(
            input_tokens=12,
            output_tokens=5,
            total_tokens=17,
            input_tokens_cache_read=8,
            reasoning_tokens=2,
        ),
    )
    # Built without validation, the output must still equal (and dump like) a validated one.
    assert output == expected
    assert output.model_dump() == expected.model_dump()
    assert ModelOutput.model_validate_json(output.model_dump_json()) == expected
    assert output.completion == "Hello."
    output.completion = "Changed."  # assignment still works on the constructed objects
    assert output.message.text == "Changed."


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "stop"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        (None, "unknown"),
        ("something_new", "unknown"),
    ],
)
def test_stop_reason_mapping(finish: str | None, reason: str) -> None:
    assert chat_output(body(choice({"content": "x"}, finish)), "m").stop_reason == reason


def test_tool_calls_are_parsed_and_bad_arguments_flagged() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "add", "arguments": "{oops"}},
        {"id": "call_c", "type": "function", "function": {"name": "add", "arguments": "[1]"}},
    ]
    output = chat_output(body(choice({"content": None, "tool_calls": calls}, "tool_calls")), "m")
    got = output.message.tool_calls
    assert got is not None
    assert got[0] == ToolCall(id="call_a", function="add", arguments={"a": 1})
    assert got[1].arguments == {} and "not valid JSON" in (got[1].parse_error or "")
    assert got[2].arguments == {} and "not a JSON object" in (got[2].parse_error or "")
    assert output.message.content == ""
    assert output.stop_reason == "tool_calls"


def test_reasoning_content_and_refusal() -> None:
    reasoning = chat_output(
        body(choice({"content": "42", "reasoning_content": "6 x 7"})), "deepseek-reasoner"
    )
    assert reasoning.message.content == [
        ContentReasoning(reasoning="6 x 7"),
        ContentText(text="42"),
    ]
    assert reasoning.message.reasoning == "6 x 7"
    assert reasoning.completion == "42"
    openrouter = chat_output(body(choice({"content": "ok", "reasoning": "hmm"})), "m")
    assert openrouter.message.reasoning == "hmm"
    refusal = chat_output(body(choice({"content": None, "refusal": "I can't."})), "m")
    assert refusal.message.content == [ContentText(text="I can't.", refusal=True)]


def test_chat_logprobs() -> None:
    logprobs = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.5,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                    {"token": "Hey", "logprob": -1.5, "bytes": None},
                ],
            }
        ]
    }
    output = chat_output(body(choice({"content": "Hi"}, logprobs=logprobs)), "m")
    assert output.choices[0].logprobs == Logprobs(
        content=[
            Logprob(
                token="Hi",
                logprob=-0.5,
                bytes=[72, 105],
                top_logprobs=[
                    TopLogprob(token="Hi", logprob=-0.5, bytes=[72, 105]),
                    TopLogprob(token="Hey", logprob=-1.5),
                ],
            )
        ]
    )


def test_completions_shape_logprobs_with_echoed_null() -> None:
    data = {
        "model": "m",
        "choices": [
            {
                "index": 0,
                "text": "a b",
                "finish_reason": "length",
                "logprobs": {
                    "tokens": ["a", " b"],
                    "token_logprobs": [None, -0.25],
                    "top_logprobs": [None, {" b": -0.25, " c": -2.0}],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    output = completion_output(data, "m")
    assert output.completion == "a b" and output.stop_reason == "max_tokens"
    items = output.choices[0].logprobs.content  # type: ignore[union-attr]
    assert items[0].token == "a" and math.isnan(items[0].logprob)
    assert items[0].top_logprobs is None
    assert items[1].top_logprobs == [
        TopLogprob(token=" b", logprob=-0.25),
        TopLogprob(token=" c", logprob=-2.0),
    ]
    assert output.usage == ModelUsage(input_tokens=1, output_tokens=2, total_tokens=3)


def test_n_choices_and_missing_usage() -> None:
    data = body(choice({"content": "a"}), {**choice({"content": "b"}, "length"), "index": 1})
    output = chat_output(data, "m")
    assert [c.message.text for c in output.choices] == ["a", "b"]
    assert [c.stop_reason for c in output.choices] == ["stop", "max_tokens"]
    assert output.usage is None


@pytest.mark.parametrize(
    "data",
    [[1, 2], {"id": "x"}, {"choices": [{"index": 0}]}, "text"],
    ids=["list", "no-choices", "no-message", "string"],
)
def test_malformed_bodies_raise_malformed_response(data: Any) -> None:
    with pytest.raises(MalformedResponse):
        chat_output(data, "m")


def test_error_object_in_a_200_becomes_a_status_error() -> None:
    with pytest.raises(HTTPStatusError) as caught:
        chat_output({"error": {"message": "upstream overloaded", "code": 502}}, "m")
    assert caught.value.status == 502
    assert caught.value.message == "upstream overloaded"


def test_chunk_text() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    assert chunk_text(orjson.dumps(chunk)) == ("Hel", False)
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    assert chunk_text(orjson.dumps(last)) == ("", True)
    assert chunk_text(b'{"choices": [], "usage": {"total_tokens": 3}}') == ("", False)
    text = {"choices": [{"index": 0, "text": "lo", "finish_reason": None}]}
    assert chunk_text(orjson.dumps(text), "text") == ("lo", False)
    with pytest.raises(MalformedResponse):
        chunk_text(b"{not json")
    with pytest.raises(HTTPStatusError, match="overloaded"):
        chunk_text(b'{"error": {"message": "overloaded"}}')
