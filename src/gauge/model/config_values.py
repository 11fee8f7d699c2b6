"""Lenient spellings of GenerateConfig values, as Inspect AI and command lines write them.

    logit_bias         "42=10,43=-10" (Inspect's CLI form) -> {42: 10.0, 43: -10.0}
    reasoning_history  True -> "all", False -> "none" (Inspect's boolean form)
    max_tool_output    unset -> 16 KiB (Inspect's default); 0 -> no limit

Each converter runs before pydantic's own validation, so a value it does not
recognise reaches pydantic unchanged and fails there with the usual message.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_TOOL_OUTPUT = 16 * 1024
"""Bytes of each tool result sent back to the model when max_tool_output is unset."""


def logit_bias_value(value: Any) -> Any:
    """`"42=10,43=-10"` as `{42: 10.0, 43: -10.0}`; any other value unchanged."""
    if not isinstance(value, str):
        return value
    bias: dict[int, float] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        token, sep, amount = item.partition("=")
        try:
            if not sep:
                raise ValueError
            bias[int(token.strip())] = float(amount.strip())
        except ValueError:
            raise ValueError(
                f"logit_bias item {item.strip()!r} must be TOKEN_ID=BIAS, e.g. '42=10,43=-10'"
            ) from None
    return bias


def reasoning_history_value(value: Any) -> Any:
    """True as "all", False as "none"; any other value unchanged."""
    if value is True:
        return "all"
    if value is False:
        return "none"
    return value


def tool_output_limit(max_tool_output: int | None) -> int | None:
    """The byte limit applied to tool results: the default when unset, None for 0."""
    if max_tool_output is None:
        return DEFAULT_MAX_TOOL_OUTPUT
    return max_tool_output or None
