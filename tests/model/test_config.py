"""GenerateConfig: validation ranges, merge semantics and precedence through a Model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from gauge.errors import one_line
from gauge.model import registry
from gauge.model.api import ModelAPI
from gauge.model.config import (
    ADVISORY_FIELDS,
    PIPELINE_FIELDS,
    PROVIDER_FIELDS,
    GenerateConfig,
    ResponseSchema,
)
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.tools import ToolChoice, ToolInfo

# field -> (lowest valid, highest valid, values just outside); None = unbounded that side
RANGES: dict[str, tuple[Any, Any, list[Any]]] = {
    "temperature": (0, 2, [-0.001, 2.001]),
    "top_p": (1e-9, 1, [0, 1.0001]),
    "top_logprobs": (0, 20, [-1, 21]),
    "frequency_penalty": (-2, 2, [-2.01, 2.01]),
    "presence_penalty": (-2, 2, [-2.01, 2.01]),
    "max_tokens": (1, None, [0]),
    "best_of": (1, None, [0]),
    "top_k": (1, None, [0]),
    "num_choices": (1, None, [0]),
    "max_connections": (1, None, [0]),
    "max_retries": (0, None, [-1]),
    "max_tool_output": (0, None, [-1]),
    "timeout": (1e-6, None, [0, -1]),
    "attempt_timeout": (1e-6, None, [0]),
}


@pytest.mark.parametrize("field", sorted(RANGES))
def test_range_boundaries(field: str) -> None:
    low, high, outside = RANGES[field]
    assert getattr(GenerateConfig(**{field: low}), field) == low
    if high is not None:
        assert getattr(GenerateConfig(**{field: high}), field) == high
    for bad in outside:
        with pytest.raises(ValidationError) as info:
            GenerateConfig(**{field: bad})
        assert one_line(info.value).startswith(f"{field}: ")


def test_logit_bias_range() -> None:
    ok = GenerateConfig(logit_bias={50256: -100, 1: 100.0})
    assert ok.logit_bias == {50256: -100.0, 1: 100.0}
    for bad in (-100.5, 100.01):
        with pytest.raises(ValidationError, match="logit_bias for token 7"):
            GenerateConfig(logit_bias={7: bad})


def test_unknown_field_and_bad_literal_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        GenerateConfig(temprature=0.5)  # type: ignore[call-arg]
    assert "temprature" in one_line(info.value)
    with pytest.raises(ValidationError):
        GenerateConfig(reasoning_effort="extreme")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        GenerateConfig(reasoning_history="some")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ResponseSchema(name="x", json_schema={}, unknown=1)  # type: ignore[call-arg]


def test_issue_fields_all_exist() -> None:
    issue_fields = {
        "max_retries", "timeout", "attempt_timeout", "max_connections", "system_message",
        "max_tokens", "top_p", "temperature", "stop_seqs", "best_of", "frequency_penalty",
        "presence_penalty", "logit_bias", "seed", "top_k", "num_choices", "logprobs",
        "top_logprobs", "parallel_tool_calls", "internal_tools", "max_tool_output",
        "cache_prompt", "reasoning_effort", "reasoning_history", "response_schema",
        "extra_headers", "extra_body",
    }  # fmt: skip
    assert issue_fields <= set(GenerateConfig.model_fields)
    assert set(GenerateConfig.model_fields) == PIPELINE_FIELDS | PROVIDER_FIELDS
    assert not PIPELINE_FIELDS & PROVIDER_FIELDS
    assert ADVISORY_FIELDS <= PROVIDER_FIELDS


def test_json_round_trip_including_int_keys_and_schema() -> None:
    config = GenerateConfig(
        temperature=0.3,
        logit_bias={50256: -100},
        stop_seqs=["\n\n"],
        response_schema=ResponseSchema(name="answer", json_schema={"type": "object"}),
        extra_body={"a": {"b": 1}},
        cache_prompt="auto",
        seed=None,
    )
    parsed = GenerateConfig.model_validate_json(config.model_dump_json(exclude_unset=True))
    assert parsed == config
    assert parsed.model_fields_set == config.model_fields_set
    assert "seed" in parsed.model_fields_set  # explicitly set to None survives the trip


def test_merge_overrides_field_by_field() -> None:
    base = GenerateConfig(temperature=0.2, max_tokens=100, seed=1)
    merged = base.merge(GenerateConfig(temperature=0.9, top_p=0.5))
    assert merged.temperature == 0.9
    assert merged.top_p == 0.5
    assert merged.max_tokens == 100 and merged.seed == 1
    assert merged.model_fields_set == {"temperature", "top_p", "max_tokens", "seed"}
    # the operands are unchanged
    assert base.temperature == 0.2 and base.top_p is None


def test_merge_explicit_none_overrides_but_absence_inherits() -> None:
    base = GenerateConfig(seed=7, temperature=0.5)
    merged = base.merge(GenerateConfig(seed=None))
    assert merged.seed is None
    assert merged.temperature == 0.5
    assert base.merge(GenerateConfig()).seed == 7
    assert base.merge(None) is base
    assert GenerateConfig().merge(base) is base


def test_merge_dict_fields_merge_by_key_others_replace_whole() -> None:
    base = GenerateConfig(
        extra_headers={"X-A": "1", "X-B": "1"},
        extra_body={"a": 1, "nested": {"x": 1}},
        logit_bias={1: 5.0, 2: 5.0},
        stop_seqs=["a", "b"],
    )
    merged = base.merge(
        GenerateConfig(
            extra_headers={"X-B": "2"},
            extra_body={"b": 2, "nested": {"y": 2}},
            logit_bias={3: -1.0},
            stop_seqs=["c"],
        )
    )
    assert merged.extra_headers == {"X-A": "1", "X-B": "2"}
    # one level only: a nested dict in extra_body is replaced, not deep-merged
    assert merged.extra_body == {"a": 1, "b": 2, "nested": {"y": 2}}
    assert merged.logit_bias == {3: -1.0}
    assert merged.stop_seqs == ["c"]
    cleared = merged.merge(GenerateConfig(extra_headers=None))
    assert cleared.extra_headers is None
    assert cleared.extra_body == merged.extra_body
    assert base.extra_headers == {"X-A": "1", "X-B": "1"}  # not mutated by the merge


def test_set_fields_skips_unset_and_none() -> None:
    config = GenerateConfig(temperature=0.0, seed=None, stop_seqs=[])
    assert config.set_fields() == {"temperature": 0.0, "stop_seqs": []}


class Recorder(ModelAPI):
    """Records the config of every request; its provider default is max_tokens=11."""

    honours: ClassVar[frozenset[str]] = PROVIDER_FIELDS
    seen: ClassVar[list[GenerateConfig]] = []

    def max_tokens(self) -> int | None:
        return 11

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        Recorder.seen.append(config)
        return ModelOutput.from_content(self.model_name, "ok")


@pytest.fixture
def recorder() -> Iterator[type[Recorder]]:
    registry.modelapi("recorder")(Recorder)
    Recorder.seen = []
    yield Recorder
    registry.unregister("recorder")


async def test_precedence_provider_default_model_task_call(recorder: type[Recorder]) -> None:
    # provider default < model config < task config < per-call config
    model = get_model(
        "recorder/x", config=GenerateConfig(temperature=0.1, top_p=0.1, seed=1, top_k=1)
    )
    task = GenerateConfig(top_p=0.2, seed=2, top_k=2)
    call = GenerateConfig(seed=3, top_k=None)
    await model.generate("hi")
    await model.generate("hi", config=task)
    await model.generate("hi", config=task.merge(call))
    first, second, third = recorder.seen
    assert (first.max_tokens, first.temperature, first.top_p, first.seed) == (11, 0.1, 0.1, 1)
    assert (second.max_tokens, second.temperature, second.top_p, second.seed) == (11, 0.1, 0.2, 2)
    assert (third.max_tokens, third.temperature, third.top_p, third.seed) == (11, 0.1, 0.2, 3)
    assert third.top_k is None  # the call's explicit None wins over the task's and model's
    assert model.info()["max_tokens"] == 11


async def test_model_config_overrides_provider_default(recorder: type[Recorder]) -> None:
    model = get_model("recorder/x", config=GenerateConfig(max_tokens=50))
    await model.generate("hi", config=GenerateConfig(temperature=1.0))
    assert recorder.seen[0].max_tokens == 50
    await model.generate("hi", config=GenerateConfig(max_tokens=5))
    assert recorder.seen[1].max_tokens == 5
    assert model.config.max_tokens == 50  # a call's config never sticks to the model
