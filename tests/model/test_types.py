"""Model types: JSON round trips, helpers and properties."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from gauge.model.content import (
    Content,
    ContentAudio,
    ContentImage,
    ContentReasoning,
    ContentText,
    ContentVideo,
)
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.output import (
    ChatCompletionChoice,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    StopReason,
    TopLogprob,
)
from gauge.model.tools import (
    ToolCall,
    ToolCallError,
    ToolChoice,
    ToolFunction,
    ToolInfo,
    ToolParams,
)

MESSAGES = TypeAdapter(ChatMessage)
CONTENT = TypeAdapter(Content)
CHOICE = TypeAdapter(ToolChoice)

ALL_CONTENT: list[Any] = [
    ContentText(text="hello", refusal=True),
    ContentImage(image="https://example.com/cat.png", detail="high"),
    ContentImage(image="data:image/png;base64,iVBORw0KGgo="),
    ContentAudio(audio="data:audio/wav;base64,UklGRg==", format="wav"),
    ContentAudio(audio="clip.mp3", format="mp3"),
    ContentVideo(video="https://example.com/v.mp4", format="mp4"),
    ContentVideo(video="v.mpeg", format="mpeg"),
    ContentVideo(video="v.mov", format="mov"),
    ContentReasoning(reasoning="think", signature="sig-1"),
    ContentReasoning(reasoning="opaque==", redacted=True),
]


def roundtrip(value: BaseModel) -> BaseModel:
    """Dump `value` to JSON and parse it back as its own class."""
    return type(value).model_validate_json(value.model_dump_json())


@pytest.mark.parametrize("part", ALL_CONTENT, ids=lambda p: f"{p.type}")
def test_every_content_type_round_trips_through_the_union(part: Any) -> None:
    parsed = CONTENT.validate_json(part.model_dump_json())
    assert type(parsed) is type(part)
    assert parsed == part


def test_content_rejects_unknown_type_and_bad_formats() -> None:
    with pytest.raises(ValidationError):
        CONTENT.validate_python({"type": "hologram", "data": "x"})
    with pytest.raises(ValidationError):
        ContentAudio(audio="a.ogg", format="ogg")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ContentVideo(video="v.avi", format="avi")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ContentImage(image="x.png", detail="ultra")  # type: ignore[arg-type]


def test_image_detail_defaults_to_auto() -> None:
    assert ContentImage(image="x.png").detail == "auto"


CALL = ToolCall(id="call_1", function="add", arguments={"a": 1, "b": [2, 3]})

ALL_MESSAGES: list[Any] = [
    ChatMessageSystem(content="be brief"),
    ChatMessageUser(content="hi", id="m1", source="input", metadata={"k": [1, 2]}),
    ChatMessageUser(content=ALL_CONTENT[:8], tool_call_id=["call_1"]),
    ChatMessageAssistant(
        content=[ContentReasoning(reasoning="r", signature="s"), ContentText(text="ok")],
        tool_calls=[CALL],
        model="mock/x",
        source="generate",
    ),
    ChatMessageTool(
        content="3",
        tool_call_id="call_1",
        function="add",
        error=ToolCallError(type="timeout", message="took too long"),
    ),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.role)
def test_every_message_round_trips_through_the_role_union(message: Any) -> None:
    parsed = MESSAGES.validate_json(MESSAGES.dump_json(message))
    assert type(parsed) is type(message)
    assert parsed == message


def test_message_list_round_trips_and_keeps_order() -> None:
    adapter = TypeAdapter(list[ChatMessage])
    parsed = adapter.validate_json(adapter.dump_json(ALL_MESSAGES))
    assert [m.role for m in parsed] == ["system", "user", "user", "assistant", "tool"]
    assert parsed == ALL_MESSAGES


def test_role_discriminator_picks_the_class_from_plain_dicts() -> None:
    tool = MESSAGES.validate_python({"role": "tool", "content": "x", "tool_call_id": "c"})
    assert isinstance(tool, ChatMessageTool) and tool.tool_call_id == "c"
    with pytest.raises(ValidationError):
        MESSAGES.validate_python({"role": "robot", "content": "x"})


def test_text_joins_text_parts_and_skips_others() -> None:
    message = ChatMessageUser(
        content=[
            ContentText(text="one"),
            ContentImage(image="x.png"),
            ContentText(text="two"),
        ]
    )
    assert message.text == "one\ntwo"
    assert ChatMessageUser(content="plain").text == "plain"


def test_text_setter_on_string_and_on_parts() -> None:
    plain = ChatMessageUser(content="old")
    plain.text = "new"
    assert plain.content == "new"
    image = ContentImage(image="x.png")
    parts = ChatMessageUser(content=[ContentText(text="a"), image, ContentText(text="b")])
    parts.text = "replaced"
    assert parts.content == [image, ContentText(text="replaced")]
    assert parts.text == "replaced"


def test_assistant_reasoning_property() -> None:
    message = ChatMessageAssistant(
        content=[
            ContentReasoning(reasoning="first"),
            ContentReasoning(reasoning="secret", redacted=True),
            ContentReasoning(reasoning="second"),
            ContentText(text="answer"),
        ]
    )
    assert message.reasoning == "first\nsecond"
    assert message.text == "answer"
    assert ChatMessageAssistant(content="x").reasoning is None


TOOLS: list[Any] = [
    ToolInfo(
        name="add",
        description="Add two numbers.",
        parameters=ToolParams(
            properties={"a": {"type": "number"}, "b": {"type": "number"}},
            required=["a", "b"],
        ),
    ),
    ToolInfo(name="noop"),
    CALL,
    ToolCall(id="c2", function="f", parse_error="Expecting value: line 1"),
    ToolFunction(name="add"),
    ToolCallError(type="parsing", message="bad json"),
]


@pytest.mark.parametrize("value", TOOLS, ids=lambda v: type(v).__name__)
def test_tool_types_round_trip(value: Any) -> None:
    assert roundtrip(value) == value


def test_tool_info_parameters_are_a_json_schema_object() -> None:
    schema = TOOLS[0].model_dump()["parameters"]
    assert schema == {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize("choice", ["auto", "any", "none", ToolFunction(name="add")])
def test_tool_choice_round_trips(choice: Any) -> None:
    assert CHOICE.validate_json(CHOICE.dump_json(choice)) == choice


def test_tool_choice_rejects_other_strings_and_tool_call_error_kinds() -> None:
    with pytest.raises(ValidationError):
        CHOICE.validate_python("required")
    with pytest.raises(ValidationError):
        ToolCallError(type="exploded", message="x")  # type: ignore[arg-type]


def full_output() -> ModelOutput:
    logprobs = Logprobs(
        content=[
            Logprob(
                token="Hi",
                logprob=-0.25,
                bytes=[72, 105],
                top_logprobs=[
                    TopLogprob(token="Hi", logprob=-0.25, bytes=[72, 105]),
                    TopLogprob(token="Hello", logprob=-1.5),
                ],
            ),
            Logprob(token="!", logprob=-0.01),
        ]
    )
    return ModelOutput(
        model="mock/x",
        choices=[
            ChatCompletionChoice(
                message=ChatMessageAssistant(content="Hi!"),
                stop_reason="max_tokens",
                logprobs=logprobs,
            ),
            ChatCompletionChoice(
                message=ChatMessageAssistant(content="", tool_calls=[CALL]),
                stop_reason="tool_calls",
            ),
        ],
        usage=ModelUsage(
            input_tokens=10,
            output_tokens=2,
            total_tokens=12,
            input_tokens_cache_write=4,
            input_tokens_cache_read=6,
            reasoning_tokens=1,
        ),
        time=0.5,
        metadata={"request_id": "r-1", "nested": {"x": [1.5]}},
        error=None,
    )


def test_model_output_round_trips_with_choices_usage_and_logprobs() -> None:
    output = full_output()
    parsed = ModelOutput.model_validate_json(output.model_dump_json())
    assert parsed == output
    assert parsed.choices[0].logprobs is not None
    assert parsed.choices[0].logprobs.content[0].top_logprobs[1].token == "Hello"  # type: ignore[index]
    assert parsed.usage is not None and parsed.usage.input_tokens_cache_read == 6


def test_model_output_first_choice_shortcuts() -> None:
    output = full_output()
    assert output.message.text == "Hi!"
    assert output.completion == "Hi!"
    assert output.stop_reason == "max_tokens"


def test_empty_output_shortcuts() -> None:
    output = ModelOutput(model="mock/x", error="blocked by filter")
    assert output.completion == ""
    assert output.stop_reason == "unknown"
    assert output.message.text == "" and output.message.model == "mock/x"
    parsed = ModelOutput.model_validate_json(output.model_dump_json())
    assert parsed.error == "blocked by filter"


def test_completion_setter_updates_first_choice_or_creates_one() -> None:
    output = full_output()
    output.completion = "Bye"
    assert output.choices[0].message.content == "Bye"
    assert output.choices[1].message.content == ""
    empty = ModelOutput(model="mock/x")
    empty.completion = "made"
    assert empty.completion == "made"
    assert empty.stop_reason == "stop"
    assert empty.message.model == "mock/x"


def test_from_content() -> None:
    output = ModelOutput.from_content("mock/x", "answer", stop_reason="content_filter", error="e")
    assert output.completion == "answer"
    assert output.stop_reason == "content_filter"
    assert output.error == "e"
    assert output.message.source == "generate" and output.message.model == "mock/x"
    parts = ModelOutput.from_content("m", [ContentText(text="a"), ContentText(text="b")])
    assert parts.completion == "a\nb" and parts.stop_reason == "stop"
    assert ModelOutput.model_validate_json(parts.model_dump_json()) == parts


def test_for_tool_call() -> None:
    output = ModelOutput.for_tool_call("mock/x", "add", {"a": 1, "b": 2})
    assert output.stop_reason == "tool_calls"
    calls = output.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert (calls[0].function, calls[0].arguments) == ("add", {"a": 1, "b": 2})
    assert calls[0].id.startswith("call_") and len(calls[0].id) == 37
    again = ModelOutput.for_tool_call("mock/x", "add", {"a": 1, "b": 2}).message.tool_calls
    assert again is not None and again[0].id != calls[0].id  # default ids are unique
    assert output.completion == "tool call for tool add"
    named = ModelOutput.for_tool_call("m", "f", {}, tool_call_id="xyz", content="calling f")
    assert named.message.tool_calls is not None and named.message.tool_calls[0].id == "xyz"
    assert named.completion == "calling f"
    assert ModelOutput.model_validate_json(named.model_dump_json()) == named


@pytest.mark.parametrize(
    "reason", ["stop", "max_tokens", "model_length", "tool_calls", "content_filter", "unknown"]
)
def test_every_stop_reason_is_accepted(reason: StopReason) -> None:
    choice = ChatCompletionChoice(message=ChatMessageAssistant(content=""), stop_reason=reason)
    assert roundtrip(choice) == choice


def test_stop_reason_rejects_others() -> None:
    with pytest.raises(ValidationError):
        ChatCompletionChoice(message=ChatMessageAssistant(content=""), stop_reason="length")  # type: ignore[arg-type]


def test_usage_addition() -> None:
    a = ModelUsage(input_tokens=3, output_tokens=4, total_tokens=7, input_tokens_cache_read=2)
    b = ModelUsage(input_tokens=10, output_tokens=1, total_tokens=11, reasoning_tokens=5)
    total = a + b
    assert total == ModelUsage(
        input_tokens=13,
        output_tokens=5,
        total_tokens=18,
        input_tokens_cache_write=None,
        input_tokens_cache_read=2,
        reasoning_tokens=5,
    )
    # the sum is a normal, serialisable usage object and the operands are untouched
    assert ModelUsage.model_validate_json(total.model_dump_json()) == total
    assert a.input_tokens == 3 and b.reasoning_tokens == 5
    assert (ModelUsage() + ModelUsage()).input_tokens_cache_write is None
