"""Request parsing: mapping, neutral values and one-line 400s naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from gauge.serve.engines.base import BASIC_FIELDS
from gauge.serve.schemas import APIError, parse_chat, parse_completion

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chat(**fields: Any) -> Any:
    return parse_chat({**CHAT, **fields}, BASIC_FIELDS | {"top_k", "echo"}, "test")


def test_chat_maps_fields() -> None:
    parsed = chat(
        max_completion_tokens=7,
        temperature=0.5,
        stop="END",
        logprobs=True,
        top_logprobs=4,
        top_k=3,
        seed=9,
        stream=True,
        stream_options={"include_usage": True},
        user="someone",
    )
    [request] = parsed.requests
    s = request.sampling
    assert (s.max_tokens, s.temperature, s.stop, s.logprobs, s.top_k, s.seed) == (
        7,
        0.5,
        ("END",),
        4,
        3,
        9,
    )
    assert parsed.stream and parsed.include_usage
    assert request.messages is not None and request.messages[0].text == "hi"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"min_p": 0.1}, "min_p"),
        ({"messages": []}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"stop": [1]}, "stop"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"best_of": 2}, "best_of"),
        ({"model": ""}, "model"),
        ({"top_p": 0}, "top_p"),
    ],
)
def test_chat_errors_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as info:
        chat(**fields)
    assert info.value.status == 400 and info.value.param == param
    assert info.value.body()["error"]["type"] == "invalid_request_error"


def test_completion_prompt_forms() -> None:
    honours = BASIC_FIELDS | {"echo"}
    for prompt, expected in [
        ("text", ["text"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1], [2, 3]], [[1], [2, 3]]),
    ]:
        parsed = parse_completion({"model": "m", "prompt": prompt}, honours, "t")
        assert [r.prompt for r in parsed.requests] == expected
        assert parsed.requests[0].sampling.max_tokens == 16  # OpenAI's default
    bad: Any
    for bad in ([], [1, "a"], 5, None, [[]]):
        with pytest.raises(APIError) as info:
            parse_completion({"model": "m", "prompt": bad}, honours, "t")
        assert info.value.param == "prompt"
    with pytest.raises(APIError) as info:
        parse_completion({"model": "m", "prompt": "x", "suffix": "y"}, honours, "t")
    assert info.value.param == "suffix"
    with pytest.raises(APIError) as info:
        parse_completion({"model": "m", "prompt": "x", "echo": True, "logprobs": 1}, honours, "t")
    assert info.value.param == "echo"
    with pytest.raises(APIError) as info:
        parse_completion(
            {"model": "m", "prompt": "x", "add_generation_prompt": False}, honours, "t"
        )
    assert info.value.param == "add_generation_prompt"
