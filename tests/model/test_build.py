"""trusted(): objects assembled without validation equal validated ones."""

from __future__ import annotations

from pydantic import BaseModel

from gauge.model._build import trusted
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import ModelUsage


def test_every_field_given_equals_the_validated_model() -> None:
    values = {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
        "input_tokens_cache_write": None,
        "input_tokens_cache_read": 2,
        "reasoning_tokens": None,
    }
    built = trusted(ModelUsage, dict(values))
    assert built == ModelUsage(**values)
    assert built.model_dump() == values
    assert built.model_fields_set == set(values)
    assert built + built == ModelUsage(**values) + ModelUsage(**values)


def test_values_missing_a_field_fall_back_to_defaults() -> None:
    class Later(BaseModel):
        a: int
        b: str = "default"

    obj = trusted(Later, {"a": 1})
    assert (obj.a, obj.b) == (1, "default")
    assert trusted(Later, {"a": 2, "b": "x"}).model_dump() == {"a": 2, "b": "x"}


def test_built_objects_stay_normal_mutable_models() -> None:
    message = trusted(
        ChatMessageAssistant,
        {
            "content": "hi",
            "id": None,
            "source": "generate",
            "metadata": None,
            "role": "assistant",
            "tool_calls": None,
            "model": "m",
        },
    )
    message.text = "changed"
    assert message.content == "changed"
    assert ChatMessageAssistant.model_validate_json(message.model_dump_json()) == message
