"""Inspect AI's API reference (seed 001): get_model, Model, GenerateConfig, ModelAPI,
ModelOutput, messages, content, logprobs and the cache functions, called as the
reference shows them, against gauge offline (the mock provider, a custom provider
registered with @modelapi, and fake wire-format servers on 127.0.0.1).
docs/compatibility.md ("Inspect AI") is the table these tests check.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parents[1] / "model" / "providers" / "fakes"))

from fake_anthropic import FakeAnthropic, FakeServer, Recorded, Reply
from fake_google import FakeGoogle
from fake_mistral import FakeMistral, completion

from gauge import Task, eval
from gauge.dataset import Sample
from gauge.errors import ConfigError, ModelError
from gauge.evaluation.state import TaskState
from gauge.model import (
    ChatCompletionChoice,
    ChatMessage,
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
    Logprob,
    Logprobs,
    Model,
    ModelAPI,
    ModelCall,
    ModelOutput,
    ModelUsage,
    ToolChoice,
    ToolFunction,
    ToolInfo,
    TopLogprob,
    get_model,
    modelapi,
    registry,
)
from gauge.model.cache import (
    cache_clear,
    cache_list_expired,
    cache_path,
    cache_prune,
    cache_size,
)
from gauge.model.cache.policy import CachePolicy
from gauge.model.tool_functions import tool_info
from gauge.solver import Generate

# -- get_model and Model ------------------------------------------------------------------


async def test_get_model_is_memoized_unless_asked_not_to() -> None:
    first = get_model("mock/a")
    assert get_model("mock/a") is first
    assert get_model("mock/a", memoize=False) is not first
    assert get_model(first) is first  # a Model is returned unmodified


async def test_async_context_manager_closes_and_leaves_the_memo() -> None:
    async with get_model("mock/ctx") as model:
        response = await model.generate("Say hello")
    assert response.completion == "Say hello"
    assert get_model("mock/ctx") is not model


async def test_model_attributes_and_constructor() -> None:
    api = get_model("mock/attrs").api
    model = Model(api, GenerateConfig(temperature=0.3))
    assert model.api is api and model.name == "mock/attrs"
    assert model.config.temperature == 0.3


async def test_get_model_without_a_name_inside_an_eval_is_the_evaluated_model(
    tmp_path: Path,
) -> None:
    seen: list[Model] = []

    async def helper(state: TaskState, generate: Generate) -> TaskState:
        seen.append(get_model())
        with pytest.raises(ConfigError, match="returns the model being evaluated"):
            get_model(config=GenerateConfig(temperature=0))
        return await generate(state)

    evaluated = get_model("mock/evaluated")
    [result] = await asyncio.to_thread(
        eval,
        Task([Sample(input="hi", target="hi", id=1)], solver=helper),
        model=evaluated,
        log_dir=tmp_path,
        display=False,
    )
    assert result.status == "success"
    assert seen == [evaluated]


async def test_get_model_without_a_name_outside_an_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_EVAL_MODEL", "mock/from-env")
    assert get_model().name == "mock/from-env"


# -- Python functions as tools ---------------------------------------------------------------


def add(x: int, y: int = 1) -> int:
    """Add two numbers.

    Args:
        x: The first number.
        y: The second number,
            one when left out.
    """
    return x + y


async def lookup(city: str, units: Literal["C", "F"] = "C") -> str:
    """Weather in a city."""
    return f"sunny in {city}"


def test_a_docstring_function_becomes_a_tool_info() -> None:
    info = tool_info(add)
    assert info == ToolInfo.model_validate(
        {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "x": {"type": "integer", "description": "The first number."},
                    "y": {
                        "type": "integer",
                        "description": "The second number, one when left out.",
                        "default": 1,
                    },
                },
                "required": ["x"],
            },
        }
    )
    weather = tool_info(lookup)
    assert weather.parameters.properties["units"] == {
        "enum": ["C", "F"],
        "type": "string",
        "default": "C",
    }


async def test_generate_takes_functions_and_tool_info_alike() -> None:
    seen: list[list[ToolInfo]] = []

    def reply(input: Any, tools: list[ToolInfo], tool_choice: ToolChoice, config: Any) -> str:
        seen.append(tools)
        return "ok"

    model = get_model("mock/tools", outputs=reply)
    await model.generate("2+3?", tools=[add, lookup], tool_choice=ToolFunction(name="add"))
    assert [t.name for t in seen[0]] == ["add", "lookup"]
    assert seen[0][0] == tool_info(add)


@pytest.mark.parametrize(
    ("tools", "choice", "error"),
    [
        ([lambda x: x], None, "tool function <lambda> has no docstring"),
        ([ToolInfo(name="look up")], None, "tool name 'look up' is not accepted by providers"),
        ([ToolInfo(name="x" * 65)], None, "is not accepted by providers: use 1-64"),
        ([add, ToolInfo(name="add")], None, "two tools are named 'add'"),
        ([add], ToolFunction(name="lookup"), "tool_choice names 'lookup', not one of: add"),
        ([], "any", 'tool_choice="any" needs tools'),
    ],
)
async def test_the_mock_refuses_what_hosted_apis_refuse(
    tools: list[Any], choice: ToolChoice | None, error: str
) -> None:
    model = get_model("mock/strict")
    with pytest.raises(ConfigError, match=error.replace("(", r"\(")):
        await model.generate("hi", tools=tools, tool_choice=choice)
    assert model.api.calls == 0  # type: ignore[attr-defined]


def test_tool_functions_need_annotations_and_named_parameters() -> None:
    def untyped(x):  # type: ignore[no-untyped-def,unused-ignore]
        """Untyped."""

    def star(*items: int) -> None:
        """Star."""

    with pytest.raises(ConfigError, match="parameter x has no type annotation"):
        tool_info(untyped)
    with pytest.raises(ConfigError, match=r"takes \*items; a tool's parameters must be named"):
        tool_info(star)


class FakeOpenAI(FakeServer):
    def default(self, recorded: Recorded) -> Reply:
        return Reply(body=completion("4", model=recorded.body["model"]))


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, FakeServer]]:
    fakes: dict[str, FakeServer] = {
        "openai": FakeOpenAI(),
        "anthropic": FakeAnthropic(),
        "google": FakeGoogle(),
        "mistral": FakeMistral(),
    }
    for fake in fakes.values():
        await fake.start()
    yield fakes
    for fake in fakes.values():
        await fake.stop()


def _wire_tool(provider: str, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(name, description, parameters) of the first tool in a request body."""
    if provider in ("openai", "mistral"):
        function = body["tools"][0]["function"]
        return function["name"], function["description"], function["parameters"]
    if provider == "anthropic":
        tool = body["tools"][0]
        return tool["name"], tool["description"], tool["input_schema"]
    declaration = body["tools"][0]["functionDeclarations"][0]
    return declaration["name"], declaration["description"], declaration["parameters"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "mistral"])
async def test_function_tools_reach_every_provider_with_tools(
    servers: dict[str, FakeServer], provider: str
) -> None:
    server = servers[provider]
    base = f"{server.url}/v1" if provider == "openai" else server.url
    async with get_model(f"{provider}/m", base_url=base, api_key="k", memoize=False) as model:
        await model.generate("2+3?", tools=[add])
    name, description, parameters = _wire_tool(provider, server.last.body)
    assert (name, description) == ("add", "Add two numbers.")
    assert parameters["required"] == ["x"]
    assert parameters["properties"]["x"]["description"] == "The first number."


# -- GenerateConfig ------------------------------------------------------------------------


SEED_FIELDS = [
    "max_retries",
    "timeout",
    "max_connections",
    "system_message",
    "max_tokens",
    "top_p",
    "temperature",
    "stop_seqs",
    "best_of",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "seed",
    "top_k",
    "num_choices",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "internal_tools",
    "max_tool_output",
    "cache_prompt",
    "reasoning_effort",
    "reasoning_history",
]


def test_every_field_of_the_reference_exists() -> None:
    assert set(SEED_FIELDS) <= set(GenerateConfig.model_fields)
    for effort in ("low", "medium", "high"):
        assert GenerateConfig(reasoning_effort=effort).reasoning_effort == effort
    assert GenerateConfig(cache_prompt="auto").cache_prompt == "auto"


def test_merge_accepts_a_dict() -> None:
    merged = GenerateConfig(temperature=0.2, max_tokens=10).merge({"temperature": 0.9})
    assert (merged.temperature, merged.max_tokens) == (0.9, 10)
    with pytest.raises(ConfigError, match="bad config: temperature"):
        GenerateConfig().merge({"temperature": 9})


def test_logit_bias_text_form() -> None:
    assert GenerateConfig(logit_bias="42=10,43=-10").logit_bias == {42: 10.0, 43: -10.0}  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be TOKEN_ID=BIAS"):
        GenerateConfig(logit_bias="42:10")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"logit_bias for token 42 is 200\.0"):
        GenerateConfig(logit_bias="42=200")  # type: ignore[arg-type]


def _recording_mock() -> tuple[Model, list[list[ChatMessage]]]:
    inputs: list[list[ChatMessage]] = []

    def reply(input: list[ChatMessage], *rest: Any) -> str:
        inputs.append(input)
        return "ok"

    return get_model("mock/rec", outputs=reply, memoize=False), inputs


async def test_reasoning_history_takes_booleans() -> None:
    assert GenerateConfig(reasoning_history=True).reasoning_history == "all"  # type: ignore[arg-type]
    assert GenerateConfig(reasoning_history=False).reasoning_history == "none"  # type: ignore[arg-type]
    model, inputs = _recording_mock()
    history: list[ChatMessage] = [
        ChatMessageUser(content="q"),
        ChatMessageAssistant(content="a", reasoning="thought about it"),  # type: ignore[call-arg]
        ChatMessageUser(content="and?"),
    ]
    await model.generate(history, config={"reasoning_history": True})
    await model.generate(history, config={"reasoning_history": False})
    kept, dropped = inputs[0][1], inputs[1][1]
    assert isinstance(kept, ChatMessageAssistant) and isinstance(dropped, ChatMessageAssistant)
    assert kept.reasoning == "thought about it"
    assert dropped.reasoning is None and dropped.text == "a"


async def test_max_tool_output_defaults_to_16_kib() -> None:
    model, inputs = _recording_mock()
    conversation: list[ChatMessage] = [
        ChatMessageUser(content="read it"),
        ChatMessageAssistant.model_validate(
            ModelOutput.for_tool_call("m", "read", {}, "c1").message.model_dump()
        ),
        ChatMessageTool(content="x" * 20_000, tool_call_id="c1", function="read"),
    ]
    await model.generate(conversation)
    await model.generate(conversation, config=GenerateConfig(max_tool_output=0))
    await model.generate(conversation, config=GenerateConfig(max_tool_output=100))
    default, unlimited, small = (m[2].text for m in inputs)
    assert default == "x" * 16_384 + "\n[tool output truncated to 16384 bytes]"
    assert unlimited == "x" * 20_000
    assert small.startswith("x" * 100 + "\n[tool output truncated")


# -- ModelOutput, ModelUsage, messages, content, logprobs ------------------------------------


def test_model_output_fields_and_from_content() -> None:
    output = ModelOutput.from_content("m", "hello", stop_reason="max_tokens", error=None)
    assert (output.model, output.completion, output.stop_reason) == ("m", "hello", "max_tokens")
    assert isinstance(output.message, ChatMessageAssistant)
    assert isinstance(output.choices[0], ChatCompletionChoice)
    assert (output.usage, output.time, output.metadata, output.error) == (None, None, None, None)


def test_for_tool_call_default_ids_are_unique_and_content_is_described() -> None:
    ids = set()
    for _ in range(100):
        output = ModelOutput.for_tool_call("m", "add", {"x": 1})
        calls = output.message.tool_calls
        assert calls is not None
        ids.add(calls[0].id)
    assert len(ids) == 100
    assert output.completion == "tool call for tool add"
    given = ModelOutput.for_tool_call("m", "add", {}, tool_call_id="c9", content="calling")
    assert given.message.tool_calls is not None and given.message.tool_calls[0].id == "c9"
    assert given.completion == "calling"


def test_model_usage_fields() -> None:
    usage = ModelUsage(
        input_tokens=10,
        output_tokens=2,
        total_tokens=12,
        input_tokens_cache_write=4,
        input_tokens_cache_read=6,
    )
    assert (usage + usage).input_tokens_cache_read == 12


def test_assistant_reasoning_keyword_is_kept() -> None:
    message = ChatMessageAssistant(content="42", reasoning="six times seven")  # type: ignore[call-arg]
    assert message.reasoning == "six times seven"
    assert message.text == "42"
    assert isinstance(message.content, list)
    assert isinstance(message.content[0], ContentReasoning)
    again = ChatMessageAssistant.model_validate_json(message.model_dump_json())
    assert again.reasoning == "six times seven"


def test_messages_and_content_types() -> None:
    system = ChatMessageSystem(content="be brief", source="input")
    user = ChatMessageUser(
        content=[
            ContentText(text="look"),
            ContentImage(image="data:image/png;base64,AA", detail="high"),
        ],
        tool_call_id=["c1"],
    )
    tool = ChatMessageTool(content="3", tool_call_id="c1", function="add")
    assert (system.role, user.role, tool.role) == ("system", "user", "tool")
    assert user.text == "look" and tool.function == "add"
    assert ContentAudio(audio="a.mp3", format="mp3").format == "mp3"
    assert ContentVideo(video="v.mp4", format="mp4").format == "mp4"


def test_logprobs_types() -> None:
    top = TopLogprob(token="a", logprob=-0.1, bytes=[97])
    logprobs = Logprobs(content=[Logprob(token="a", logprob=-0.1, bytes=[97], top_logprobs=[top])])
    assert logprobs.content[0].top_logprobs == [top]


# -- the cache -------------------------------------------------------------------------------


def test_cache_policy_defaults() -> None:
    policy = CachePolicy()
    assert (policy.expiry, policy.per_epoch, policy.scopes) == ("1W", True, {})
    assert CachePolicy(expiry=None).seconds is None


async def test_cache_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "cache"))
    model = get_model("mock/cached")
    await model.generate("one", cache=CachePolicy(expiry="1W", per_epoch=False, scopes={"r": "x"}))
    await model.generate("two", cache=True)
    assert cache_path("mock/cached") == cache_path() and cache_path().is_file()
    [(name, size)] = cache_size(subdirs=["mock/cached"])
    assert name == "mock/cached" and size > 0
    assert cache_list_expired() == []
    assert cache_prune(files=[]) == 0  # empty: every expired entry, and none is
    import sqlite3

    with sqlite3.connect(cache_path()) as raw:
        raw.execute("UPDATE entries SET expires = 1")
    expired = cache_list_expired(filter_by=["mock/cached"])
    assert len(expired) == 2
    assert cache_prune(files=[Path(expired[0].key)]) == 1  # a Path names an entry by its key
    assert cache_prune(files=expired) == 1
    assert cache_clear(model="mock/cached") is False  # nothing left to clear


# -- ModelAPI: a custom provider -----------------------------------------------------------


class CallingAPI(ModelAPI):
    """Returns (output, ModelCall) as Inspect providers may, or (exception, ModelCall)."""

    fail = False

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> tuple[ModelOutput | Exception, ModelCall]:
        request = {"messages": [m.text for m in input]}
        if self.fail:
            return ValueError("bad request"), ModelCall.create(request, {"error": "bad"})
        output = ModelOutput.from_content(self.model_name, "called")
        return output, ModelCall.create(request, {"text": "called"}, time=0.01)


@pytest.fixture
def custom() -> Iterator[type[CallingAPI]]:
    modelapi("compat-calling")(CallingAPI)
    yield CallingAPI
    registry.unregister("compat-calling")
    CallingAPI.fail = False


async def test_a_provider_may_return_output_and_model_call(custom: type[CallingAPI]) -> None:
    model = get_model("compat-calling/m", memoize=False)
    output = await model.generate("Say hello", config=GenerateConfig(max_retries=0))
    assert output.completion == "called"
    assert output.call == ModelCall(
        request={"messages": ["Say hello"]}, response={"text": "called"}, time=0.01
    )
    assert "call" not in output.model_dump()  # never cached or journalled


async def test_a_returned_exception_is_raised_with_its_call(custom: type[CallingAPI]) -> None:
    CallingAPI.fail = True
    model = get_model("compat-calling/m", memoize=False)
    with pytest.raises(ValueError, match="bad request") as info:
        await model.generate("x", config=GenerateConfig(max_retries=0))
    assert info.value.model_call.response == {"error": "bad"}  # type: ignore[attr-defined]


async def test_a_provider_returning_something_else_is_a_clear_error() -> None:
    class Wrong(ModelAPI):
        async def generate(self, *args: Any) -> Any:
            return ("text", "not a call")

    modelapi("compat-wrong")(Wrong)
    try:
        with pytest.raises(ModelError, match=r"not \(ModelOutput, ModelCall\)"):
            await get_model("compat-wrong/m").generate("x", config={"max_retries": 0})
    finally:
        registry.unregister("compat-wrong")


def test_capability_methods_are_refused_with_the_data_form() -> None:
    with pytest.raises(TypeError, match="collapse_user_messages must be a bool"):

        class Hooked(ModelAPI):
            def collapse_user_messages(self) -> bool:  # type: ignore[override]
                return True

            async def generate(self, *args: Any) -> ModelOutput:
                raise NotImplementedError


def test_model_api_init_arguments() -> None:
    api = CallingAPI("m", base_url="http://127.0.0.1:1", api_key="k", config=GenerateConfig())
    assert (api.model_name, api.base_url) == ("m", "http://127.0.0.1:1")
    assert api.api_key is not None and api.api_key.get() == "k" and "k" not in repr(api.api_key)
    assert api.max_tokens() is None and api.max_connections() == 10
    assert "m" in api.connection_key()
