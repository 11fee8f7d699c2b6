"""GenResult -> ModelOutput without re-validation: same objects as validated ones."""

from __future__ import annotations

from gauge.model.output import ModelOutput
from gauge.model.providers.hf.generation import GenChoice, GenResult, TokenLogprob
from gauge.model.providers.hf.output import build_output


def token_bytes(token_id: int) -> tuple[str, bytes]:
    return {1: ("4", b"4"), 2: ("2", b"2"), 3: ("\ufffd", b"\xe6")}[token_id]


def test_built_output_equals_a_validated_one() -> None:
    result = GenResult(
        input_tokens=14,
        choices=[
            GenChoice("42", [1, 2, 9], "stop", [TokenLogprob(1, -0.1, [(1, -0.1), (3, -2.5)])]),
            GenChoice("4", [1], "max_tokens"),
        ],
    )
    output = build_output(result, "gauge-tiny", token_bytes)
    again = ModelOutput.model_validate(output.model_dump())
    assert output.model_dump() == again.model_dump()
    assert output.completion == "42" and output.stop_reason == "stop"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens) == (14, 4)
    assert output.usage.total_tokens == 18
    assert output.choices[1].stop_reason == "max_tokens"
    assert output.message.model == "gauge-tiny" and output.message.source == "generate"
    first = output.choices[0].logprobs
    assert first is not None
    assert first.content[0].top_logprobs is not None
    assert first.content[0].top_logprobs[1].bytes == [0xE6]
    assert output.model_fields_set == set(ModelOutput.model_fields)
    output.completion = "changed"  # still a normal, mutable pydantic model
    assert output.choices[0].message.text == "changed"
