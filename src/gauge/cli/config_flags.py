"""The generation flags of `gauge eval`: one option per GenerateConfig field.

Built from the schema, so a field added to GenerateConfig gets its flag (and its
GAUGE_<FLAG> environment twin) without a change here; a few fields have their own
spelling in eval.py (`OWN_FLAGS`).
"""

from __future__ import annotations

import typing
from typing import Any

import click

from gauge.errors import ConfigError, one_line

# Flags with their own spelling below; every other GenerateConfig field gets --field-name.
OWN_FLAGS = {"max_connections", "max_retries", "timeout", "cache"}

_HELP = {
    "attempt_timeout": "Seconds for one attempt; a slower one is cancelled and retried.",
    "system_message": "System message inserted before the conversation.",
    "max_tool_output": "Bytes of tool output kept.",
    "drop_unsupported": "Drop (with a warning) settings the provider cannot honour.",
    "max_tokens": "Most tokens to generate.",
    "top_p": "Nucleus sampling mass (0-1].",
    "temperature": "Sampling temperature (0-2).",
    "stop_seqs": "Stop sequence (repeatable).",
    "best_of": "Generate N server-side and return the best.",
    "frequency_penalty": "Penalty for frequent tokens (-2..2).",
    "presence_penalty": "Penalty for tokens already present (-2..2).",
    "logit_bias": "Token id -> bias, as JSON: '{\"50256\": -100}'.",
    "seed": "Random seed, for providers that take one.",
    "top_k": "Sample from the K most likely tokens.",
    "num_choices": "Completions per request.",
    "logprobs": "Return log probabilities of the output tokens.",
    "top_logprobs": "Alternatives per token with logprobs (0-20).",
    "parallel_tool_calls": "Allow several tool calls in one turn.",
    "internal_tools": "Map tools onto the provider's built-in tools.",
    "cache_prompt": "Provider-side prompt caching: auto, true or false.",
    "reasoning_effort": "Reasoning effort for reasoning models.",
    "reasoning_history": "Which earlier reasoning to send back.",
    "response_schema": 'Structured output, as JSON: \'{"name": ..., "json_schema": {...}}\'.',
    "extra_headers": 'Extra HTTP headers, as JSON: \'{"X-Team": "evals"}\'.',
    "extra_body": "Extra request body fields, as JSON.",
    "batch": "Send requests as provider batch jobs (about half price): true, a batch size, "
    'or JSON such as \'{"size": 500, "send_delay": 60}\' (see docs/batch.md).',
}
_METAVARS = {"batch": "true|false|N|JSON"}


def _env(name: str) -> str:
    return "GAUGE_" + name.upper().replace("-", "_")


def config_options() -> list[click.Option]:
    """One option per GenerateConfig field (bool fields get --x/--no-x)."""
    from gauge.model.config import GenerateConfig

    options = []
    for name, info in GenerateConfig.model_fields.items():
        if name in OWN_FLAGS:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = _HELP.get(name) or info.description or name.replace("_", " ")
        kinds = _kinds(info.annotation)
        if kinds == {bool}:
            options.append(
                click.Option(
                    [f"{flag}/--no-{flag[2:]}", name],
                    default=None,
                    envvar=_env(name),
                    help=help_text,
                )
            )
        elif list in kinds:
            options.append(
                click.Option(
                    [flag, name],
                    multiple=True,
                    envvar=_env(name),
                    help=help_text,
                )
            )
        else:
            literal = _literal(info.annotation)
            options.append(
                click.Option(
                    [flag, name],
                    type=click.Choice(literal) if literal else str,
                    metavar=None if literal else _METAVARS.get(name) or _metavar(kinds),
                    envvar=_env(name),
                    help=help_text,
                )
            )
    return options


def _metavar(kinds: set[type]) -> str:
    """What --help shows a value as (parsed later as YAML, then validated by GenerateConfig)."""
    if kinds == {int}:
        return "INTEGER"
    if kinds <= {int, float}:
        return "FLOAT"
    if kinds == {str}:
        return "TEXT"
    if bool in kinds:
        return "auto|true|false"
    return "JSON"


def _kinds(annotation: Any) -> set[type]:
    out: set[type] = set()
    for arg in typing.get_args(annotation) or (annotation,):
        origin = typing.get_origin(arg) or arg
        if origin is type(None):
            continue
        out.add(origin if isinstance(origin, type) else object)
    return out


def _literal(annotation: Any) -> list[str] | None:
    values: list[str] = []
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) is typing.Literal:
            values.extend(str(v) for v in typing.get_args(arg))
        elif arg is not type(None):
            return None
    return values or None


def _config_values(params: dict[str, Any]) -> dict[str, Any]:
    import yaml

    from gauge.model.config import GenerateConfig

    values: dict[str, Any] = {}
    for name in GenerateConfig.model_fields:
        if name in OWN_FLAGS:
            continue
        value = params.get(name)
        if value is None or value == ():
            continue
        if isinstance(value, str) and name not in ("system_message",):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                flag = f"--{name.replace('_', '-')}"
                raise ConfigError(
                    f"{flag} {value!r} is not valid YAML/JSON; see gauge eval --help for its form"
                ) from None
        values[name] = list(value) if isinstance(value, tuple) else value
    return values


def build_config(params: dict[str, Any]) -> Any:
    from gauge.model.config import GenerateConfig

    values = _config_values(params)
    for name in ("max_connections", "max_retries", "timeout"):
        if params.get(name) is not None:
            values[name] = params[name]
    if params.get("cache") is not None:
        from gauge.model.cache.policy import parse_cache_flag

        values["cache"] = parse_cache_flag(params["cache"])
    try:
        return GenerateConfig(**values)
    except ValueError as ex:
        raise ConfigError(f"bad generation flag: {one_line(ex)}") from None
