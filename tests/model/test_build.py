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
        "cost": None,
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
    assert obj.model_fields_set == {"a"}
    assert obj == Later(a=1)
    assert trusted(Later, {"a": 2, "b": "x"}).model_dump() == {"a": 2, "b": "x"}


def test_a_field_left_out_takes_the_fast_path_with_its_default(monkeypatch) -> None:
    # ModelUsage.cost came after the providers' trusted() calls: leaving it out must
    # neither lose it nor fall back to model_construct (the slow path).
    def slow(*args: object, **kwargs: object) -> None:
        raise AssertionError("model_construct was called")

    monkeypatch.setattr(ModelUsage, "model_construct", slow)
    usage = trusted(ModelUsage, {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7})
    assert usage.cost is None and usage.reasoning_tokens is None
    assert list(usage.model_dump()) == list(ModelUsage.model_fields)
    assert usage == ModelUsage(input_tokens=3, output_tokens=4, total_tokens=7)


def test_a_missing_field_with_a_factory_or_no_default_is_not_guessed() -> None:
    class Required(BaseModel):
        a: int
        b: list[int] = []

    # `a` missing has no default: model_construct decides (it leaves it unset).
    obj = trusted(Required, {"b": [1]})
    assert obj.b == [1] and "a" not in obj.__dict__
    # A mutable default is never shared between two built objects.
    first, second = trusted(Required, {"a": 1}), trusted(Required, {"a": 2})
    first.b.append(5)
    assert second.b == []


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
