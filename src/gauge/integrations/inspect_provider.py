"""An Inspect AI model provider that sends every call through gauge's pipeline.

`inspect eval task.py --model gauge/openai/gpt-4o-mini` (any gauge model name after
`gauge/`) runs an Inspect task with gauge underneath: its providers, retries, rate
control, cache and cost accounting. Inspect finds the provider through the
`inspect_ai` entry point in gauge's pyproject.toml, which loads this module.

Inspect's types and gauge's share field names (gauge copied Inspect's shapes), so
messages, tools, tool choice, config and outputs map by dumping one and validating
the other. What gauge cannot carry is refused with a one-line error, never dropped:
content parts other than text, image, audio, video and reasoning; tool `options`;
and the Inspect-only config fields that change results (`UNSUPPORTED_CONFIG`).
Retries happen once, in gauge: `should_retry` is False, so Inspect does not retry
what gauge already retried.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.model import ChatMessage as InspectMessage
from inspect_ai.model import GenerateConfig as InspectConfig
from inspect_ai.model import ModelAPI, modelapi
from inspect_ai.model import ModelOutput as InspectOutput
from inspect_ai.tool import ToolChoice as InspectToolChoice
from inspect_ai.tool import ToolFunction as InspectToolFunction
from inspect_ai.tool import ToolInfo as InspectToolInfo
from pydantic import TypeAdapter, ValidationError

from gauge.errors import ConfigError, UnsupportedConfig
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo

PROVIDER = "gauge"

SHARED_CONFIG = frozenset(GenerateConfig.model_fields) & frozenset(InspectConfig.model_fields)
"""Inspect config fields gauge takes as they are (same name, same meaning)."""

INSPECT_APPLIES = frozenset({"system_message", "max_tool_output", "reasoning_history", "cache"})
"""Fields Inspect's own Model applies around the provider (its system message, tool
output truncation, reasoning history, its response cache): not passed to gauge."""

UNSUPPORTED_CONFIG = frozenset(
    {
        "effort",
        "reasoning_mode",
        "reasoning_summary",
        "reasoning_tokens",
        "verbosity",
        "modalities",
        "prompt_logprobs",
    }
)
"""Inspect-only fields that change results and gauge has no field for: refused."""

_CONTENT_TYPES = frozenset({"text", "image", "audio", "video", "reasoning"})
_messages: TypeAdapter[list[ChatMessage]] = TypeAdapter(list[ChatMessage])


def to_gauge_messages(messages: list[InspectMessage]) -> list[ChatMessage]:
    """Inspect chat messages as gauge's (same fields; refuses content gauge cannot send)."""
    dumped = [m.model_dump(exclude_none=True) for m in messages]
    for message in dumped:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") not in _CONTENT_TYPES:
                raise ConfigError(
                    f"Inspect content of type {part.get('type')!r} cannot go through gauge; "
                    "send text, image, audio, video or reasoning parts"
                )
    return _messages.validate_python(dumped)


def to_gauge_tools(tools: list[InspectToolInfo]) -> list[ToolInfo]:
    """Inspect tool definitions as gauge's."""
    out = []
    for tool in tools:
        if tool.options:
            raise ConfigError(
                f"tool {tool.name!r} has provider options ({', '.join(tool.options)}), "
                "which gauge does not send; remove them to run it through gauge"
            )
        out.append(ToolInfo.model_validate(tool.model_dump(exclude_none=True, exclude={"options"})))
    return out


def to_gauge_tool_choice(choice: InspectToolChoice) -> ToolChoice:
    """ "auto" / "any" / "none" as they are; a named function as gauge's ToolFunction."""
    if isinstance(choice, InspectToolFunction):
        return ToolFunction(name=choice.name)
    return choice


def to_gauge_config(config: InspectConfig) -> GenerateConfig:
    """The fields set in Inspect's config that gauge takes, as a gauge GenerateConfig."""
    given = config.model_dump(exclude_none=True)
    refused = sorted(UNSUPPORTED_CONFIG & given.keys())
    if refused:
        raise UnsupportedConfig(
            f"Inspect config {', '.join(refused)} has no gauge equivalent and changes results; "
            "unset it to run through gauge, or use Inspect's own provider for this model"
        )
    fields = {k: v for k, v in given.items() if k in SHARED_CONFIG - INSPECT_APPLIES}
    try:
        return GenerateConfig.model_validate(fields)
    except ValidationError as ex:
        error = ex.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"Inspect config {where}: {error['msg']} (as gauge reads it)") from None


def to_inspect_output(output: ModelOutput) -> InspectOutput:
    """gauge's ModelOutput as Inspect's (usage `cost` becomes `total_cost`)."""
    data = output.model_dump(exclude_none=True)
    usage = data.get("usage")
    if usage is not None and "cost" in usage:
        usage["total_cost"] = float(usage.pop("cost"))
    return InspectOutput.model_validate(data)


class GaugeAPI(ModelAPI):
    """Inspect's ModelAPI over a gauge Model: `gauge/<gauge model name>`.

    Model args (`-M`) go to gauge's `get_model` as they are (e.g. `-M device=cpu`).
    """

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_vars: list[str] | None = None,
        config: InspectConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(
            model_name, base_url, api_key, api_key_vars or [], config or InspectConfig()
        )
        self.model = get_model(model_name, base_url=base_url, api_key=api_key, **model_args)

    async def generate(
        self,
        input: list[InspectMessage],
        tools: list[InspectToolInfo],
        tool_choice: InspectToolChoice,
        config: InspectConfig,
    ) -> InspectOutput:
        """Translate, call gauge's pipeline (retries, rate, cache, cost), translate back."""
        output = await self.model.generate(
            to_gauge_messages(input),
            tools=to_gauge_tools(tools) or None,
            tool_choice=to_gauge_tool_choice(tool_choice) if tools else None,
            config=to_gauge_config(config),
        )
        return to_inspect_output(output)

    def max_connections(self) -> int:
        """As many as gauge's adaptive concurrency may use: gauge's limiter holds the rest."""
        return self.model.api.max_connections_limit()

    def connection_key(self) -> str:
        """One pool per gauge model (gauge keys its own limits per connection)."""
        return self.model.name

    def should_retry(self, ex: Exception) -> bool:
        """Never: gauge's pipeline already retried (with backoff and Retry-After)."""
        return False


@modelapi(name=PROVIDER)
def gauge() -> type[ModelAPI]:
    """The `gauge/...` provider for Inspect AI."""
    return GaugeAPI
