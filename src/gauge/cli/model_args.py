"""`-M` on the command line: every spelling the systems gauge replaces use.

    -M temperature_scale=0.5                        name=value
    -M transport:grpc                               name:value (Inspect AI's docs)
    -M 'model=x,base_url=http://h/v1,num_concurrent=10'
                                                    lm-eval's --model_args: comma-joined
    -M api-key=KEY                                  `-` in a name reads as `_` (Inspect)
    --model local-completions -M model=NAME         lm-eval's model type and name

A comma starts a new pair only when `name=` follows it, so values with commas
(`-M device=0,1,2,3`, several base URLs) stay whole. Values are read as YAML
(`3`, `true`, `[a, b]`), except those of credential-like names, which stay the
text given (a key such as `0123` must not become a number).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gauge.errors import ConfigError

_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_PAIR = re.compile(rf"\s*({_NAME})\s*([=:])(.*)", re.S)
_NEXT_PAIR = re.compile(rf",(?=\s*{_NAME}\s*=)")


def parse_model_args(items: Iterable[str]) -> dict[str, Any]:
    """The model args given as `-M` items, names normalised (`api-key` -> `api_key`)."""
    from gauge.evaluation.task import parse_value
    from gauge.model.credentials import is_credential_arg

    out: dict[str, Any] = {}
    for item in items:
        for piece in _NEXT_PAIR.split(item):
            match = _PAIR.fullmatch(piece)
            if match is None or (match.group(2) == ":" and match.group(3).startswith("//")):
                raise ConfigError(
                    f"-M {piece!r} must be name=value (or name:value; several as 'a=1,b=2')"
                )
            name, raw = match.group(1).replace("-", "_"), match.group(3)
            value = raw.strip() if is_credential_arg(name) else parse_value(raw)
            if name in out and out[name] != value:
                shown = "" if is_credential_arg(name) else f" ({out[name]!r} and {value!r})"
                raise ConfigError(f"-M {name} is given twice with different values{shown}")
            out[name] = value
    return out


def lm_eval_names(
    models: list[Any], model_args: dict[str, Any], apply_chat_template: bool | None
) -> tuple[list[Any], dict[str, Any]]:
    """(models, model args) after lm-eval's `-M model=NAME` and `--apply_chat_template`.

    `--model local-completions -M model=my-model` runs `local-completions/my-model`;
    the flag is the model arg of the same name.
    """
    from gauge.model.lm_eval_args import NAME_ARGS, model_from_args

    args = dict(model_args)
    if apply_chat_template:
        args["apply_chat_template"] = True
    if not any(name in args for name in NAME_ARGS):
        return models, args
    named = [model_from_args(m, args) for m in models or [None]]
    return [m for m, _ in named], named[0][1]
