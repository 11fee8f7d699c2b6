"""lm-evaluation-harness's model-argument names, accepted by every provider where they fit.

    -M base_url=URL        the provider's base URL (same as base_url=)
    -M num_concurrent=N    max_connections (requests in flight per connection key)
    -M max_retries=N       max_retries
    -M timeout=SECONDS     timeout
    -M max_gen_toks=N      max_tokens default (the model's config; a task or call still wins)
    -M tokenizer=SPEC      left as a model arg for providers that take one
    -M batch_size=N        left as a model arg for providers that take one
    -M apply_chat_template=true, -M chat_template=TEXT|FILE
                           left as model args for providers that take them (local-completions)
    -M model=NAME, -M pretrained=NAME
                           the model's name (`--model local-completions -M model=my-model`)
    base_url given as the full endpoint (http://host/v1/completions) means its base

A provider that names one of these in its own `__init__` (a template provider
takes `num_concurrent`, `batch_size`, `tokenizer` and `max_gen_toks` itself) gets
it as a model arg, converted and checked; providers that score loglikelihoods take
`tokenizer` and `batch_size`. Values may arrive as strings (the CLI,
YAML files); a bad one, or a clash with the same setting given under gauge's
name, is a one-line ConfigError.

Every other model arg is checked against what the provider takes
(`check_model_args`), before the provider is built: a provider class declares
the names it reads (`model_arg_names`, data like its capabilities) and, when it
passes other names on somewhere (OpenAI-compatible providers into the request
body, hf to `from_pretrained`), where (`model_args_go_to`). An unknown name on a
provider that passes nothing on, or a GenerateConfig field given as a model arg
(`-M temperature=0`) where the provider does not take it, is a one-line
ConfigError naming the known args. A provider that declares nothing (a custom
one reading `self.model_args`) is not checked.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from gauge.errors import ConfigError, GaugeError, one_line
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig

CONFIG_ARGS: dict[str, str] = {
    "num_concurrent": "max_connections",
    "max_retries": "max_retries",
    "timeout": "timeout",
    "max_gen_toks": "max_tokens",
    "batch": "batch",
}
"""lm-eval model arg (and Inspect AI's `-M batch=`) -> the GenerateConfig field it sets."""

PROVIDER_ARGS = ("tokenizer", "batch_size")
"""lm-eval model args passed on only to providers that take them."""

ENDPOINTS = ("completions", "chat/completions")
"""The OpenAI endpoint paths a base URL given as a full endpoint may end with."""

M = TypeVar("M")

NAME_ARGS = ("model", "pretrained")
"""lm-eval model args that name the model (`model` wins over `pretrained`, as in lm-eval)."""


def _whole(minimum: int) -> Callable[[str, Any], int]:
    def convert(name: str, value: Any) -> int:
        number = _number(name, value)
        if not float(number).is_integer() or number < minimum:
            raise ConfigError(f"-M {name}={value} must be a whole number >= {minimum}")
        return int(number)

    return convert


def _seconds(name: str, value: Any) -> float:
    number = _number(name, value)
    if number <= 0:
        raise ConfigError(f"-M {name}={value} must be a number of seconds > 0")
    return float(number)


def _tokenizer_spec(name: str, value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise ConfigError(f"-M {name}= is empty; give a tokenizer path or name")
        return value.strip()
    if all(hasattr(value, attr) for attr in ("encode", "decode", "prefix_token_id")):
        return value  # a tokenizer object, from Python
    raise ConfigError(f"-M {name} must be a tokenizer path or name, got {type(value).__name__}")


def _batch(name: str, value: Any) -> Any:
    try:
        return GenerateConfig(batch=value).batch
    except ValueError as ex:
        raise ConfigError(f"-M {name}={value!r}: {one_line(ex)}") from None


def _flag(name: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if isinstance(value, bool) or text in ("true", "false"):
        return value if isinstance(value, bool) else text == "true"
    raise ConfigError(f"-M {name}={value!r} must be true or false")


def _template(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"-M {name}= must be a Jinja chat template, or a file holding one")
    return value


CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "num_concurrent": _whole(1),
    "max_retries": _whole(0),
    "timeout": _seconds,
    "max_gen_toks": _whole(1),
    "batch_size": _whole(1),
    "tokenizer": _tokenizer_spec,
    "apply_chat_template": _flag,
    "chat_template": _template,
    "batch": _batch,
}


def resolve(
    cls: type[ModelAPI],
    base_url: str | None,
    model_args: Mapping[str, Any],
    config: GenerateConfig,
) -> tuple[str | None, dict[str, Any], GenerateConfig]:
    """(base_url, model_args, config) with lm-eval's argument names applied for `cls`."""
    base_url, args = split_base_url(base_url, model_args)
    values: dict[str, Any] = {}
    for name, convert in CONVERTERS.items():
        if name not in args:
            continue
        value = convert(name, args[name])
        field = CONFIG_ARGS.get(name)
        if field is not None:
            current = getattr(config, field) if field in config.model_fields_set else None
            if current is not None and current != value:
                raise ConfigError(_clash(name, args_value=value, field=field, current=current))
        if takes(cls, name):
            args[name] = value
        elif field is None:
            raise ConfigError(_not_taken(cls, name))
        else:
            del args[name]
            values[field] = value
    if values:
        config = config.merge(GenerateConfig(**values))
    return base_url, args, config


def model_from_args(model: M, model_args: Mapping[str, Any]) -> tuple[M | str, dict[str, Any]]:
    """(model, the other model args), with lm-eval's `-M model=` / `-M pretrained=` applied.

    A bare provider (`--model local-completions`, lm-eval's `--model` type) gets the
    name appended; `provider/name` must name the same model. A built Model (not a
    name) is returned as it is.
    """
    args = dict(model_args)
    if model is not None and not isinstance(model, str):
        return model, args
    given = [args.pop(name) for name in NAME_ARGS if name in args]
    if not given:
        return model, args
    name = str(given[0]).strip()
    if not name:
        raise ConfigError("-M model= is empty; give the model's name, e.g. -M model=my-model")
    if model is None:
        raise ConfigError(
            f"-M model={name} names the model; give its provider with --model, "
            "e.g. --model local-completions"
        )
    provider, sep, current = str(model).strip().partition("/")
    if sep and current and current != name:
        raise ConfigError(
            f"--model {model} and -M model={name} name two models; give the name once"
        )
    return f"{provider}/{name}", args


def endpoint_base(cls: type[ModelAPI], url: str | None) -> str | None:
    """`url` less the endpoint path an OpenAI-compatible provider adds itself.

    lm-eval users give the full endpoint (`-M base_url=http://host/v1/completions`);
    gauge's providers post to `<base>/completions` or `<base>/chat/completions`.
    The other endpoint than the provider speaks is a one-line ConfigError.
    """
    path = getattr(cls, "path", None)
    if not url or path not in ENDPOINTS:
        return url
    trimmed = url.rstrip("/")
    chat = trimmed.endswith("/chat/completions")
    if chat != (path == "chat/completions") and trimmed.endswith("/completions"):
        other = "chat/completions" if chat else "completions"
        use = "local-chat-completions" if chat else "local-completions"
        raise ConfigError(
            f"base_url {url} is a /{other} endpoint, but provider {cls.name!r} posts to "
            f"/{path}; use --model {use}/<model>, or give the base URL (ending in /v1)"
        )
    return trimmed[: -len(path) - 1] if trimmed.endswith("/" + path) else url


def split_base_url(
    base_url: str | None, model_args: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """(base_url, the other model args): `-M base_url=` taken out, checked against `base_url`.

    Callers that pass model args as keywords to `get_model` next to `base_url=`
    must split first (Python refuses the same keyword twice).
    """
    args = dict(model_args)
    if "base_url" not in args:
        return base_url, args
    given = args.pop("base_url")
    if not isinstance(given, str) or not given.strip():
        raise ConfigError(f"-M base_url={given!r} must be a URL, e.g. http://localhost:8000/v1")
    if base_url and base_url.rstrip("/") != given.strip().rstrip("/"):
        raise ConfigError(f"-M base_url={given} conflicts with base_url {base_url}; give only one")
    return base_url or given.strip(), args


def check_conflicts(model_args: Mapping[str, Any], config: GenerateConfig) -> None:
    """Raise when an lm-eval model arg and a gauge setting (e.g. a flag) disagree.

    For callers that hold the run's settings apart from the model's (eval() and
    the CLI): `-M num_concurrent=4 --max-connections 8` is a one-line error, not
    a precedence question, since both were given for one run.
    """
    for name, field in CONFIG_ARGS.items():
        if name not in model_args or field not in config.model_fields_set:
            continue
        current = getattr(config, field)
        value = CONVERTERS[name](name, model_args[name])
        if current is not None and current != value:
            raise ConfigError(_clash(name, args_value=value, field=field, current=current))


def takes(cls: type[ModelAPI], name: str) -> bool:
    """Whether provider class `cls` takes model arg `name` itself.

    True when an `__init__` in its MRO names the argument, or, for `tokenizer` and
    `batch_size`, when the provider scores loglikelihoods (which tokenize and batch).
    """
    if name in PROVIDER_ARGS and getattr(cls, "supports_loglikelihood", False):
        return True
    import inspect  # only when an lm-eval arg is given: it costs ~4 ms to import

    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            parameter = inspect.signature(init).parameters.get(name)
        except (TypeError, ValueError):
            continue
        if parameter is not None and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            return True
    return False


def providers_taking(name: str) -> list[str]:
    """Known provider names whose class takes model arg `name` (loads provider modules)."""
    from gauge.model.registry import provider_class, provider_names

    out = []
    for provider in provider_names():
        try:
            cls = provider_class(provider)
        except (GaugeError, ImportError):
            continue
        if takes(cls, name):
            out.append(provider)
    return out


_BASE_PARAMETERS = frozenset({"self", "model_name", "base_url", "api_key", "config"})


def known_model_args(cls: type[ModelAPI]) -> frozenset[str] | None:
    """The model args provider class `cls` reads, or None when it does not declare them.

    Its declared `model_arg_names`, and the keyword parameters of the `__init__`
    methods in its MRO (a subclass that adds a parameter takes it too).
    """
    declared = cls.model_arg_names
    if declared is None:
        return None
    return frozenset(declared) | _init_parameters(cls)


def model_args_read(cls: type[ModelAPI]) -> frozenset[str]:
    """The model-arg names `cls` reads itself: declared, or named by its `__init__`."""
    known = known_model_args(cls)
    return _init_parameters(cls) if known is None else known


@functools.lru_cache(maxsize=256)
def _init_parameters(cls: type[ModelAPI]) -> frozenset[str]:
    import inspect  # only when model args are given: it costs ~4 ms to import

    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(
            p.name
            for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        )
    return frozenset(names - _BASE_PARAMETERS)


def check_model_args(cls: type[ModelAPI], provider: str, model_args: Mapping[str, Any]) -> None:
    """Raise a one-line ConfigError for model args provider class `cls` does not take.

    Call after `resolve` (lm-eval's names are handled there). A provider that
    passes other names on (`model_args_go_to`) refuses only GenerateConfig
    fields it does not take itself: `-M temperature=0` is a generation setting.
    """
    if not model_args:
        return
    known = known_model_args(cls)
    if known is None:
        return
    lm_eval = {name for name in PROVIDER_ARGS if takes(cls, name)}
    unknown = sorted(n for n in model_args if n not in known and n not in lm_eval)
    passed_on = cls.model_args_go_to
    if passed_on:
        unknown = [n for n in unknown if n in GenerateConfig.model_fields]
    if unknown:
        raise ConfigError(_unknown_args(provider, unknown, known, passed_on))


def _unknown_args(provider: str, unknown: list[str], known: frozenset[str], to: str | None) -> str:
    got = ", ".join(unknown)
    setting = next((n for n in unknown if n in GenerateConfig.model_fields), None)
    flag = "" if setting is None else "--" + setting.replace("_", "-")
    if to:  # only generation settings are refused here
        return (
            f"-M {got} is a generation setting, not a model arg of provider {provider!r}; "
            f"give it as {flag} (config: in --model-config, GenerateConfig in Python)"
        )
    if known:
        message = f"provider {provider!r} does not take model args {got}; known: "
        message += ", ".join(sorted(known))
    else:
        message = f"{provider} takes no model args (got {got}); remove them"
    if setting is not None:
        message += f"; {setting} is a generation setting: give it as {flag}"
    return message


def _not_taken(cls: type[ModelAPI], name: str) -> str:
    provider = cls.name or cls.__name__
    which = providers_taking(name)
    hint = f"providers that take it: {', '.join(which)}" if which else "no known provider takes it"
    return f"provider {provider!r} does not take -M {name}; remove it ({hint})"


def _clash(name: str, args_value: Any, field: str, current: Any) -> str:
    return (
        f"-M {name}={args_value} conflicts with {field}={current} "
        f"(--{field.replace('_', '-')}); they are the same setting, give only one"
    )


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"-M {name}={value} must be a number")
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise ConfigError(f"-M {name}={value!r} must be a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"-M {name}={value} must be a finite number")
    return number
