"""Python functions as tools, and the tool checks every provider's API makes.

    def add(x: int, y: int) -> int:
        '''Add two numbers.

        Args:
            x: The first number.
            y: The second number.
        '''

`tool_info(add)` is the ToolInfo a model sees: the function's name, the
docstring's first paragraph as the description, one JSON-schema property per
parameter (from its annotation, described by the docstring's `Args:` entry),
and the parameters without defaults as `required`. `Model.generate(tools=[add])`
takes such functions directly (Inspect AI's spelling), sync or async.

`check_tools` refuses, before any request, what the hosted APIs reject with a
400: a name outside `[A-Za-z0-9_-]{1,64}`, two tools of one name, and a
tool_choice naming a tool that is not offered (or forcing a call with no tools).
It runs for every provider, the mock included, so an offline test fails where a
real provider would.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import TypeAdapter

from gauge.errors import ConfigError
from gauge.model.tools import ToolChoice, ToolFunction, ToolInfo, ToolParams

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Tool names OpenAI, Anthropic and Gemini all accept."""
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Yields?|Raises|Examples?|Notes?):\s*$")
_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def as_tool_infos(tools: Sequence[ToolInfo | Callable[..., Any]]) -> list[ToolInfo]:
    """`tools` as ToolInfo: functions are described by `tool_info`, ToolInfo kept."""
    out = []
    for item in tools:
        if isinstance(item, ToolInfo):
            out.append(item)
        elif callable(item):
            out.append(_described(item))
        else:
            raise ConfigError(
                f"tool {item!r} is a {type(item).__name__}; give a ToolInfo or a Python "
                "function with a docstring"
            )
    return out


def _described(function: Callable[..., Any]) -> ToolInfo:
    # Described once per function: an eval passes the same tools with every sample.
    try:
        return _cached_info(function)
    except TypeError:  # an unhashable callable object
        return tool_info(function)


@functools.lru_cache(maxsize=512)
def _cached_info(function: Callable[..., Any]) -> ToolInfo:
    return tool_info(function)


def tool_info(function: Callable[..., Any]) -> ToolInfo:
    """The ToolInfo describing `function` (name, docstring, annotated parameters)."""
    name = getattr(function, "__name__", type(function).__name__)
    doc = inspect.getdoc(function)
    if not doc:
        raise ConfigError(
            f"tool function {name} has no docstring; add one: its first line is the "
            "description the model reads"
        )
    description, arg_docs = parse_docstring(doc)
    hints = _hints(function, name)
    properties: dict[str, dict[str, Any]] = {}
    required: list[str] = []
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        raise ConfigError(
            f"tool function {name} has no readable signature; wrap it in a def with "
            "annotated parameters"
        ) from None
    for param in parameters:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(
                f"tool function {name} takes {'*' if param.kind is param.VAR_POSITIONAL else '**'}"
                f"{param.name}; a tool's parameters must be named, e.g. def {name}(x: int)"
            )
        if param.name not in hints:
            raise ConfigError(
                f"tool function {name}: parameter {param.name} has no type annotation; "
                f"annotate it (e.g. {param.name}: str) so the model knows what to send"
            )
        schema = _schema(hints[param.name], name, param.name)
        if param.name in arg_docs:
            schema["description"] = arg_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            schema.setdefault("default", _json_default(param.default))
        properties[param.name] = schema
    return ToolInfo(
        name=name,
        description=description,
        parameters=ToolParams(properties=properties, required=required),
    )


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google-style docstring."""
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    entry_indent: int | None = None  # indentation of the first `name: text` line
    for line in doc.splitlines():
        stripped = line.strip()
        if header := _SECTION.match(stripped):
            section, current, entry_indent = header.group(1), None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters") or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG.match(stripped)
        if match and (entry_indent is None or indent <= entry_indent):
            entry_indent = indent
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif current is not None:  # a continuation line of the current entry
            args[current] = f"{args[current]} {stripped}".strip()
    first_paragraph = "\n".join(description).strip().split("\n\n", 1)[0]
    return " ".join(first_paragraph.split()), args


def _hints(function: Callable[..., Any], name: str) -> dict[str, Any]:
    target = function if inspect.isroutine(function) else type(function).__call__
    try:
        return typing.get_type_hints(target)
    except Exception as ex:  # an annotation naming something not importable here
        raise ConfigError(
            f"tool function {name}: its annotations cannot be resolved ({ex}); "
            "import the types they name in its module"
        ) from None


def _schema(annotation: Any, function: str, param: str) -> dict[str, Any]:
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:
        raise ConfigError(
            f"tool function {function}: parameter {param}'s type {annotation!r} has no "
            "JSON schema; use str, int, float, bool, list, dict, Literal or a pydantic model"
        ) from None
    cleaned: dict[str, Any] = _without_titles(schema)
    return cleaned


def _without_titles(schema: Any) -> Any:
    # pydantic adds "title" to every schema; tool schemas do not need it.
    if isinstance(schema, dict):
        return {k: _without_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


def _json_default(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def check_tools(tools: Sequence[ToolInfo], tool_choice: ToolChoice | None) -> None:
    """Raise a one-line ConfigError for tools every hosted API would reject."""
    seen: set[str] = set()
    for tool in tools:
        if not TOOL_NAME.match(tool.name):
            raise ConfigError(
                f"tool name {tool.name!r} is not accepted by providers: use 1-64 letters, "
                "digits, _ or - (e.g. rename the function)"
            )
        if tool.name in seen:
            raise ConfigError(f"two tools are named {tool.name!r}; give each tool its own name")
        seen.add(tool.name)
    if isinstance(tool_choice, ToolFunction) and tool_choice.name not in seen:
        offered = ", ".join(t.name for t in tools) or "no tools given"
        raise ConfigError(
            f"tool_choice names {tool_choice.name!r}, not one of: {offered}; "
            "add it to tools or name one of those"
        )
    if tool_choice == "any" and not tools:
        raise ConfigError('tool_choice="any" needs tools; pass tools= or use tool_choice="auto"')
