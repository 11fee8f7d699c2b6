"""get_model and model_from_config: build Models from names, env and files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from gauge.errors import ConfigError, MissingAPIKey, ModelNameError, one_line
from gauge.model import memo
from gauge.model.active import active_model, evaluated_model
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig, as_config
from gauge.model.credentials import normalise_model_args, split_credentials
from gauge.model.lm_eval_args import (
    check_model_args,
    endpoint_base,
    model_args_read,
    model_from_args,
)
from gauge.model.lm_eval_args import resolve as resolve_lm_eval_args
from gauge.model.model import Model
from gauge.model.pool import split_urls
from gauge.model.registry import check_installed, provider_class
from gauge.model.urls import check_base_url

MODEL_ENV = "GAUGE_MODEL"
MODEL_ENVS = (MODEL_ENV, "INSPECT_EVAL_MODEL")
"""Where `get_model()` finds a model name when given none (Inspect AI's name second)."""
MODEL_BASE_URL_ENVS = ("GAUGE_MODEL_BASE_URL", "INSPECT_EVAL_MODEL_BASE_URL")
"""The base URL of that model, when its name came from the environment."""
DEFAULT_MODEL = "hf/gauge-tiny"
"""The bundled local model: used when no model is named and GAUGE_MODEL is unset."""

_memo = memo.MODELS  # the same dict
_dotenv_loaded: set[str] = set()


def get_model(
    model: str | Model | None = None,
    config: GenerateConfig | dict[str, Any] | None = None,
    base_url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    memoize: bool = True,
    **model_args: Any,
) -> Model:
    """The Model for `provider/name` (the name part may contain slashes).

    `model=None` inside a running eval returns the model being evaluated;
    elsewhere it reads GAUGE_MODEL (or Inspect AI's INSPECT_EVAL_MODEL), with
    GAUGE_MODEL_BASE_URL (or INSPECT_EVAL_MODEL_BASE_URL) as its base URL, else
    uses the bundled `hf/gauge-tiny`. A `.env` file found from the working
    directory upward is loaded first, without overriding the environment.
    Base URL: argument > `<PROVIDER>_BASE_URL`; key: argument > `<PROVIDER>_API_KEY`.
    Several base URLs (a list, or comma-separated) make an endpoint pool: one
    model served by replicas, each request sent to the least busy (pool.py).
    Identical calls return the same Model unless `memoize=False`.
    Model args: `-` reads as `_`; a credential becomes the key or is refused, never a
    request field (credentials.py); lm-eval's `pretrained=` names the model.
    """
    if isinstance(model, Model):
        return model
    if model is None and (active := active_model.get()) is not None:
        return evaluated_model(active, config, base_url, api_key, model_args)
    load_dotenv()
    model_args = normalise_model_args(model_args)
    if model is None:
        model = _first_env(MODEL_ENVS) or DEFAULT_MODEL
        base_url = base_url or _first_env(MODEL_BASE_URL_ENVS)
    if isinstance(model, str):
        named, model_args = model_from_args(model, model_args)
        model = named or model
    provider, model_name = parse_model_name(model)
    config = as_config(config) or GenerateConfig()
    key = None
    if memoize:
        key = _memo_key(model, config, base_url, api_key, model_args)
        if (cached := memo.lookup(key)) is not None:
            return cached
    cls = provider_class(provider)
    check_installed(provider, cls)
    # lm-eval's names (-M base_url= num_concurrent= max_retries= ...) mean gauge's settings.
    if not isinstance(base_url, str | None):
        base_url = ",".join(str(u) for u in base_url)
    base_url, model_args, config = resolve_lm_eval_args(cls, base_url, model_args, config)
    base_url = base_url or _first_env(env_vars(cls, provider, "BASE_URL")) or cls.default_base_url
    urls = _replica_urls(base_url)
    cls = _routed(cls, provider, urls[0], model_args)
    urls = [endpoint_base(cls, url) for url in urls]  # lm-eval's full-endpoint base_url
    api_key, model_args = _key_and_args(cls, provider, api_key, model_args)
    replicas = [
        cls(model_name, base_url=url, api_key=api_key, config=config, **model_args) for url in urls
    ]
    api = replicas[0]
    result = Model(api, config, replicas)
    if key is not None:
        memo.remember(key, result)
    return result


def _routed(
    cls: type[ModelAPI], provider: str, url: str | None, model_args: dict[str, Any]
) -> type[ModelAPI]:
    """The class serving this model under `provider` (ModelAPI.route), checked installed."""
    routed = cls.route(url, model_args)
    if routed is not cls:
        if not routed.name:
            routed.name = provider
        check_installed(provider, routed)
    return routed


def _key_and_args(
    cls: type[ModelAPI], provider: str, api_key: str | None, model_args: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """(key, model args): credential-like args taken out, the args checked, the env key read."""
    key_vars = env_vars(cls, provider, "API_KEY")
    api_key, model_args = split_credentials(
        model_args_read(cls), provider, api_key, model_args, key_vars
    )
    check_model_args(cls, provider, model_args)  # an unknown -M name fails before building
    api_key = api_key or _first_env(key_vars)
    if cls.needs_api_key and not api_key:
        names = " or ".join(key_vars)
        raise MissingAPIKey(f"provider {provider!r} needs an API key: set {names} or pass api_key=")
    return api_key, model_args


def _replica_urls(base_url: str | None) -> list[str | None]:
    """The base URL checked, as a list: one entry, or an endpoint pool's replicas."""
    urls: list[str | None] = [base_url]
    if (replicas := split_urls(base_url)) is not None:
        urls = list(replicas)
    for url in urls:
        check_base_url(url)
    return urls


def parse_model_name(model: str) -> tuple[str, str]:
    """Split `provider/name`; the name may itself contain slashes."""
    if not isinstance(model, str):
        raise ModelNameError(f"model must be a 'provider/name' string, got {type(model).__name__}")
    provider, sep, name = model.strip().partition("/")
    if not sep or not provider or not name:
        raise ModelNameError(
            f"model {model!r} must be provider/name, e.g. openai/gpt-4o-mini or mock/test"
        )
    return provider, name


def env_vars(cls: type[ModelAPI], provider: str, suffix: str) -> tuple[str, ...]:
    """The env vars a provider reads for its API_KEY or BASE_URL."""
    declared = cls.api_key_vars if suffix == "API_KEY" else cls.base_url_vars
    if declared is not None:
        return declared
    return (f"{provider.upper().replace('-', '_')}_{suffix}",)


def forget(model: Model) -> None:
    """Remove `model` from the memo (a context-managed model is private)."""
    memo.forget(model)


def clear_memo() -> None:
    """Forget every memoized model (their clients are not closed)."""
    memo.clear()


def load_dotenv(start: Path | None = None) -> Path | None:
    """Load the nearest .env from `start` (default: cwd) upward, once per file."""
    directory = (start or Path.cwd()).resolve()
    for candidate in (directory, *directory.parents):
        path = candidate / ".env"
        if path.is_file():
            if str(path) not in _dotenv_loaded:
                from dotenv import load_dotenv as _load

                _load(path, override=False)
                _dotenv_loaded.add(str(path))
            return path
    return None


def model_from_config(spec: dict[str, Any] | str | Path) -> Model:
    """Build a Model from a dict or a YAML/JSON file.

    Two shapes are accepted, at the top level or nested in a `model:` block
    (insideLLMs' run configs; the file's other keys are left to their readers):
      {type: openai, args: {model_name: gpt-4o, temperature: 0.7}}
      {model: openai/gpt-4o, temperature: 0.7, config: {...}, base_url: ..., <model args>}
    GenerateConfig fields go to the config; base_url, api_key and anything else
    go to get_model (unknown names become provider model args).
    """
    source = "model config"
    if isinstance(spec, str | Path):
        source = str(spec)
        spec = _read_spec(Path(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    if isinstance(spec.get("model"), dict):
        spec = _nested_model(spec, source)
    if "type" in spec:
        provider = spec.pop("type")
        args = dict(spec.pop("args", None) or {})
        args.update(spec)
        name = args.pop("model_name", None) or args.pop("model", None)
        if not name:
            raise ConfigError(f"{source}: 'args.model_name' is required with 'type'")
        model = f"{provider}/{name}"
    else:
        args = spec
        model = args.pop("model", None)
        if not model:
            raise ConfigError(f"{source}: give 'model: provider/name' or 'type' with 'args'")
    config_values = dict(args.pop("config", None) or {})
    for field in list(args):
        if field in GenerateConfig.model_fields:
            config_values[field] = args.pop(field)
    try:
        config = GenerateConfig(**config_values)
    except ValueError as ex:
        raise ConfigError(f"{source}: {one_line(ex)}") from None
    return get_model(
        str(model),
        config=config,
        base_url=args.pop("base_url", None),
        api_key=args.pop("api_key", None),
        **args,
    )


def _nested_model(spec: dict[str, Any], source: str) -> dict[str, Any]:
    """insideLLMs' run config: the model is the `model:` block; other keys are the run's."""
    block = dict(spec["model"])
    if "type" not in block and "model" not in block:
        raise ConfigError(
            f"{source}: the 'model:' block needs 'type' with 'args' "
            "(type: openai, args: {model_name: gpt-4o}) or 'model: provider/name'"
        )
    return block


def _read_spec(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as ex:
        raise ConfigError(f"cannot read model config {path}: {ex.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as ex:
        raise ConfigError(f"{path}: not valid YAML/JSON ({one_line(ex)})") from None


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        if value := os.environ.get(name):
            return value
    return None


def _memo_key(
    model: str,
    config: GenerateConfig,
    base_url: str | Sequence[str] | None,
    api_key: str | None,
    model_args: dict[str, Any],
) -> tuple[Any, ...]:
    if base_url is not None and not isinstance(base_url, str):
        base_url = ",".join(map(str, base_url))
    args = orjson.dumps(model_args, option=orjson.OPT_SORT_KEYS, default=repr)
    return (model, config.model_dump_json(exclude_unset=True), base_url, api_key, args)
