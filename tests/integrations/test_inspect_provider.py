"""gauge as Inspect AI's model layer: the real inspect_ai package, offline.

The `gauge/...` provider is found through the `inspect_ai` entry point; messages,
tools, tool choice, config and usage map both ways; calls go through gauge's
pipeline (its retries, not Inspect's); and a small task on the bundled model
scores the same through gauge as on Inspect's own `hf` provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

try:
    import inspect_ai  # noqa: F401  (in the dev extra: a missing one fails, never skips)
except ModuleNotFoundError:
    pytest.fail("these tests need inspect_ai: pip install 'gauge[inspect]'", pytrace=False)

from inspect_ai import Task as InspectTask
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample as InspectSample
from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ContentImage,
    ContentText,
)
from inspect_ai.model import GenerateConfig as InspectConfig
from inspect_ai.model import get_model as inspect_get_model
from inspect_ai.scorer import match
from inspect_ai.solver import generate
from inspect_ai.tool import ToolCall, ToolFunction, ToolInfo, ToolParam, ToolParams

import gauge.model
from gauge.errors import ConfigError, UnsupportedConfig
from gauge.integrations import inspect_provider as ip
from gauge.model.output import ModelOutput, ModelUsage

# Not ours to fix: inspect_ai calls tenacity with an argument newer tenacity deprecates,
# and its eval() leaves an anyio stream for the garbage collector.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in.*MemoryObjectReceiveStream"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

TINY = Path(gauge.model.__file__).parents[1] / "assets" / "gauge-tiny"
QUESTIONS = [(7, 85), (0, 3), (41, 9), (66, 33), (12, 12), (99, 1)]

ADD = ToolInfo(
    name="add",
    description="Add two numbers.",
    parameters=ToolParams(
        properties={"a": ToolParam(type="integer"), "b": ToolParam(type="integer")},
        required=["a", "b"],
    ),
)


def test_messages_tools_and_choice_map_to_gauge() -> None:
    call = ToolCall(id="c1", function="add", arguments={"a": 1, "b": 2})
    messages = [
        ChatMessageSystem(content="be brief"),
        ChatMessageUser(content=[ContentText(text="what is"), ContentImage(image="data:,x")]),
        ChatMessageAssistant(content="calling", tool_calls=[call]),
        ChatMessageTool(content="3", tool_call_id="c1", function="add"),
    ]
    system, user, assistant, tool = ip.to_gauge_messages(messages)
    assert (system.role, system.text) == ("system", "be brief")
    assert [p.type for p in user.content] == ["text", "image"]  # type: ignore[union-attr]
    assert assistant.tool_calls is not None
    assert assistant.tool_calls[0].model_dump(exclude_none=True) == {
        "id": "c1",
        "function": "add",
        "arguments": {"a": 1, "b": 2},
        "type": "function",
    }
    assert (tool.role, tool.tool_call_id, tool.function, tool.text) == ("tool", "c1", "add", "3")
    [tool_info] = ip.to_gauge_tools([ADD])
    assert tool_info.parameters.properties == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert tool_info.parameters.required == ["a", "b"]
    assert ip.to_gauge_tool_choice(ToolFunction(name="add")).model_dump() == {"name": "add"}  # type: ignore[union-attr]
    assert ip.to_gauge_tool_choice("any") == "any"


def test_what_gauge_cannot_carry_is_refused_in_one_line() -> None:
    from inspect_ai.model import ContentDocument

    with pytest.raises(ConfigError, match="Inspect content of type 'document' cannot go"):
        ip.to_gauge_messages([ChatMessageUser(content=[ContentDocument(document="data:,x")])])
    with_options = ADD.model_copy(update={"options": {"cache": True}})
    with pytest.raises(ConfigError, match="tool 'add' has provider options \\(cache\\)"):
        ip.to_gauge_tools([with_options])
    with pytest.raises(UnsupportedConfig, match="Inspect config reasoning_tokens, verbosity has"):
        ip.to_gauge_config(InspectConfig(reasoning_tokens=100, verbosity="low"))


def test_config_maps_shared_fields_and_leaves_inspects_own() -> None:
    config = InspectConfig(
        temperature=0.2,
        max_tokens=5,
        stop_seqs=["\n"],
        seed=3,
        max_retries=2,
        system_message="Inspect inserts this itself",
        max_tool_output=100,
    )
    assert ip.to_gauge_config(config).set_fields() == {
        "temperature": 0.2,
        "max_tokens": 5,
        "stop_seqs": ["\n"],
        "seed": 3,
        "max_retries": 2,
    }


def test_output_and_usage_map_back() -> None:
    output = ModelOutput.for_tool_call("mock/m", "add", {"a": 1, "b": 2}, tool_call_id="c9")
    output.usage = ModelUsage(input_tokens=7, output_tokens=3, total_tokens=10, cost=0.25)  # type: ignore[arg-type]
    converted = ip.to_inspect_output(output)
    assert converted.stop_reason == "tool_calls"
    assert converted.message.tool_calls is not None
    assert converted.message.tool_calls[0].function == "add"
    assert converted.message.tool_calls[0].arguments == {"a": 1, "b": 2}
    assert converted.usage is not None
    assert (converted.usage.input_tokens, converted.usage.total_tokens) == (7, 10)
    assert converted.usage.total_cost == 0.25


async def test_inspect_finds_the_provider_and_gauges_pipeline_retries() -> None:
    # Two transient failures: gauge's pipeline retries them; Inspect never sees them.
    model = inspect_get_model(
        "gauge/mock/flaky", memoize=False, errors=["transient", "transient"], outputs="4"
    )
    assert isinstance(model.api, ip.GaugeAPI)
    model.api.model.retry_policy.base_delay = 0.0
    output = await model.generate("What is 2+2?", config=InspectConfig(max_tokens=3))
    assert output.completion == "4"
    assert model.api.model.api.calls == 3  # two failed attempts and the answer
    assert model.api.should_retry(RuntimeError("x")) is False


async def test_tool_calls_round_trip_through_gauge() -> None:
    def reply(messages: list[Any], tools: list[Any], *_: Any) -> ModelOutput:
        if messages[-1].role == "tool":
            return ModelOutput.from_content("mock/t", f"the sum is {messages[-1].text}")
        assert [t.name for t in tools] == ["add"]
        return ModelOutput.for_tool_call("mock/t", "add", {"a": 2, "b": 2}, tool_call_id="c1")

    model = inspect_get_model("gauge/mock/tools", memoize=False, outputs=reply)
    first = await model.generate("add 2 and 2", tools=[ADD], tool_choice="auto")
    assert first.message.tool_calls is not None
    assert first.message.tool_calls[0].arguments == {"a": 2, "b": 2}
    tool = ChatMessageTool(content="4", tool_call_id="c1", function="add")
    second = await model.generate(
        [ChatMessageUser(content="add 2 and 2"), first.message, tool], tools=[ADD]
    )
    assert second.completion == "the sum is 4"


def arithmetic() -> InspectTask:
    samples = [InspectSample(input=f"What is {a}+{b}?", target=str(a + b)) for a, b in QUESTIONS]
    # One question the model was not trained for: its answer is nonsense, but the same.
    samples.append(InspectSample(input="Hello there", target="no"))
    return InspectTask(dataset=samples, solver=generate(), scorer=match())


def test_a_task_scores_the_same_through_gauge_as_on_inspects_own_hf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the bundled model only: nothing from the hub
    common: dict[str, Any] = {
        "log_dir": str(tmp_path),
        "display": "none",
        "max_tokens": 8,
    }
    [through_gauge] = inspect_eval(arithmetic(), model="gauge/hf/gauge-tiny", **common)
    [own] = inspect_eval(
        arithmetic(),
        model="hf/gauge-tiny",
        # Inspect's hf samples unless told not to; gauge's decodes greedily by default.
        model_args={"model_path": str(TINY), "device": "cpu", "do_sample": False},
        **common,
    )
    assert through_gauge.status == own.status == "success"
    assert through_gauge.samples is not None and own.samples is not None

    def answers(log: Any) -> list[tuple[str, str]]:
        return [(s.output.completion, s.scores["match"].value) for s in log.samples]

    assert answers(through_gauge) == answers(own)
    assert [v for _, v in answers(own)][:6] == ["C"] * 6  # the arithmetic is right
    assert through_gauge.results.scores[0].metrics["accuracy"].value == pytest.approx(6 / 7)


def test_a_response_schema_maps_and_a_value_gauge_cannot_take_is_one_line() -> None:
    from inspect_ai.model import ResponseSchema
    from inspect_ai.util import JSONSchema

    schema = JSONSchema(type="object", properties={"x": JSONSchema(type="integer")})
    config = ip.to_gauge_config(
        InspectConfig(response_schema=ResponseSchema(name="answer", json_schema=schema))
    )
    assert config.response_schema is not None and config.response_schema.name == "answer"
    assert config.response_schema.json_schema == {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
    }
    with pytest.raises(ConfigError, match=r"^Inspect config reasoning_effort: Input should be"):
        ip.to_gauge_config(InspectConfig(reasoning_effort="max"))
