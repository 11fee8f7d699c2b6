"""`gauge eval TASK --model provider/name`: run a task, journal it, print the results.

Every flag has a GAUGE_<FLAG> environment twin (e.g. GAUGE_LIMIT, GAUGE_TEMPERATURE),
and a `.env` file found from the working directory upward is read first.
"""

from __future__ import annotations

import asyncio
import os
import typing
from pathlib import Path
from typing import Any

import click

from gauge.errors import ConfigError, one_line

# Flags with their own spelling below; every other GenerateConfig field gets --field-name.
_OWN_FLAGS = {"max_connections", "max_retries", "timeout", "cache"}

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
}


class EvalCommand(click.Command):
    """Reads `.env` before parsing (so env twins set there count); bad flags are one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from gauge.model.factory import load_dotenv

        load_dotenv()
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as ex:
            # One line saying what is wrong, like every other gauge error.
            raise ConfigError(f"{ex.format_message()} (see gauge eval --help)") from None


def _env(name: str) -> str:
    return "GAUGE_" + name.upper().replace("-", "_")


def _config_options() -> list[click.Option]:
    """One option per GenerateConfig field (bool fields get --x/--no-x)."""
    from gauge.model.config import GenerateConfig

    options = []
    for name, info in GenerateConfig.model_fields.items():
        if name in _OWN_FLAGS:
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
                    metavar=None if literal else _metavar(kinds),
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


def _key_values(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    from gauge.evaluation.task import parse_value

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r} must be name=value")
        out[key.strip()] = parse_value(raw)
    return out


def _config_values(params: dict[str, Any]) -> dict[str, Any]:
    import yaml

    from gauge.model.config import GenerateConfig

    values: dict[str, Any] = {}
    for name in GenerateConfig.model_fields:
        if name in _OWN_FLAGS:
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


def _build_config(params: dict[str, Any]) -> Any:
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


def _model_file(
    path: str,
) -> tuple[str | None, dict[str, Any], dict[str, Any], str | None, dict[str, Any]]:
    """(model, config values, model args, base_url, other keys) from a --model-config file.

    Other keys (beside model, base_url, config, args) are model args if the provider
    takes them (`_check_file_keys`).
    """
    import yaml

    from gauge.model.config import GenerateConfig

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as ex:
        raise ConfigError(f"cannot read --model-config {path}: {ex.strerror}") from None
    except yaml.YAMLError as ex:
        raise ConfigError(f"--model-config {path} is not valid YAML/JSON: {one_line(ex)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--model-config {path} must be a mapping of settings")
    data = dict(data)
    model = data.pop("model", None)
    base_url = data.pop("base_url", None)
    config = dict(data.pop("config", None) or {})
    args = dict(data.pop("args", None) or {})
    loose: dict[str, Any] = {}
    for key, value in data.items():
        (config if key in GenerateConfig.model_fields else loose)[key] = value
    return model, config, args, base_url, loose


_FILE_KEYS = ("model", "base_url", "api_key", "config", "args")


def _check_file_keys(path: str, loose: dict[str, Any], models: list[str]) -> None:
    """A --model-config key beside model/config/args must be a model arg the provider takes.

    (Under `args:`, names go on as given: providers that pass extra names on, such as
    OpenAI-compatible ones into the request body, take them.)
    """
    if not loose:
        return
    import difflib

    from gauge.model.config import GenerateConfig
    from gauge.model.factory import DEFAULT_MODEL, MODEL_ENV, parse_model_name
    from gauge.model.lm_eval_args import CONFIG_ARGS, PROVIDER_ARGS, known_model_args
    from gauge.model.registry import provider_class

    names = models or [os.environ.get(MODEL_ENV) or DEFAULT_MODEL]
    for key in loose:
        if key == "api_key" or key in CONFIG_ARGS or key in PROVIDER_ARGS:
            continue
        for name in names:
            known = known_model_args(provider_class(parse_model_name(name)[0]))
            if known is not None and key not in known:
                words = [*GenerateConfig.model_fields, *known, *_FILE_KEYS]
                close = difflib.get_close_matches(key, words, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"--model-config {path}: unknown key {key!r}{hint}; use model, base_url, "
                    "config: {generation settings} and args: {model args}"
                )


def _eval_options(f: Any) -> Any:
    options = [
        click.argument("task_spec", metavar="TASK", required=False),
        click.option(
            "-T",
            "task_args",
            multiple=True,
            metavar="NAME=VALUE",
            envvar="GAUGE_TASK_ARGS",
            help="Task argument (repeatable).",
        ),
        click.option(
            "--model",
            "-m",
            "model",
            envvar="GAUGE_MODEL",
            help="provider/name; a comma list runs each model and compares them.",
        ),
        click.option(
            "--model-base-url", envvar="GAUGE_MODEL_BASE_URL", help="Base URL of the model's API."
        ),
        click.option(
            "-M",
            "model_args",
            multiple=True,
            metavar="NAME=VALUE",
            envvar="GAUGE_MODEL_ARGS",
            help="Model argument (repeatable).",
        ),
        click.option(
            "--model-config",
            type=click.Path(dir_okay=False),
            envvar="GAUGE_MODEL_CONFIG",
            help="YAML/JSON file of model settings (model, base_url, config, args).",
        ),
        click.option(
            "--max-connections",
            type=click.IntRange(min=1),
            envvar="GAUGE_MAX_CONNECTIONS",
            help="Concurrent requests (and samples); overrides -M and the task's.",
        ),
        click.option(
            "--max-samples",
            type=click.IntRange(min=1),
            envvar="GAUGE_MAX_SAMPLES",
            help="Samples in flight at once (default: --max-connections, or as far as "
            "adaptive concurrency may grow).",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            envvar="GAUGE_MAX_RETRIES",
            help="Retries per model call.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            envvar="GAUGE_TIMEOUT",
            help="Seconds per model call, retries included.",
        ),
        click.option(
            "--cache",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[DURATION]",
            envvar="GAUGE_CACHE",
            help="Reuse stored responses; DURATION such as 1W, 12h or never.",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            envvar="GAUGE_LIMIT",
            help="Run only the first N samples.",
        ),
        click.option(
            "--epochs",
            type=click.IntRange(min=1),
            envvar="GAUGE_EPOCHS",
            help="Times to run each sample.",
        ),
        click.option(
            "--epochs-reducer", envvar="GAUGE_EPOCHS_REDUCER", help="mean, mode, max or at_least_K."
        ),
        click.option(
            "--log-dir",
            default="logs",
            show_default=True,
            envvar="GAUGE_LOG_DIR",
            help="Where journals are written.",
        ),
        click.option(
            "--resume",
            type=click.Path(dir_okay=False),
            envvar="GAUGE_RESUME",
            help="Continue this journal: run only the samples it lacks.",
        ),
        click.option(
            "--max-errors",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            envvar="GAUGE_MAX_ERRORS",
            help="Sample errors tolerated before stopping.",
        ),
        click.option(
            "--shared-state",
            metavar="URL",
            envvar="GAUGE_SHARED_STATE",
            help="Share rate budgets, pauses and concurrency with every process using the "
            "same keys, through Redis (redis://host:6379/0). See docs/scale.md.",
        ),
        click.option(
            "--shared-state-fallback",
            type=click.Choice(["error", "local"]),
            envvar="GAUGE_SHARED_STATE_FALLBACK",
            help="Redis unreachable at start: stop with an error (default) or warn and "
            "run with local state.",
        ),
        click.option(
            "--display/--no-display",
            default=True,
            envvar="GAUGE_DISPLAY",
            help="Show live progress.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command(
    cls=EvalCommand,
    name="eval",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@_eval_options
def eval_command(**params: Any) -> None:
    """Run TASK (path.py or path.py@name) on one or more models and print the results."""
    from gauge.evaluation.runner import EvalError, take_interrupted

    take_interrupted()
    try:
        results = asyncio.run(_run(params))
    except EvalError as ex:
        if ex.results:  # the runs that finished still get their table
            _print_results(ex.results)
        raise
    except KeyboardInterrupt:  # Ctrl-C: say where the journal is and how to go on
        for path in take_interrupted():
            click.echo(f"journal kept at {path}\nresume with: {_resume_command(path)}", err=True)
        raise
    _print_results(results)


def _resume_command(path: str) -> str:
    import shlex

    return f"gauge eval --resume {shlex.quote(path)}"


eval_command.params.extend(_config_options())


def _environment_help(params: list[click.Parameter]) -> str:
    """The --help epilog: every GAUGE_* variable gauge eval reads."""
    names = [p.envvar for p in params if isinstance(p.envvar, str)]
    others = {
        "GAUGE_CACHE_DIR": "where the response cache lives",
        "GAUGE_SHARED_STATE": "redis:// URL of state shared between processes",
        "GAUGE_SHARED_STATE_FALLBACK": "error or local when Redis is unreachable",
    }
    also = "; ".join(f"{name} ({what})" for name, what in others.items() if name not in names)
    return (
        "Environment: each option can be set by its GAUGE_ variable, and a flag wins over it: "
        + ", ".join(names)
        + ". A .env file found from the working directory upward is read first. "
        + (f"Also read: {also}. " if also else "")
        + "Without --model (or GAUGE_MODEL) the bundled hf/gauge-tiny runs. Provider keys "
        "and URLs are <PROVIDER>_API_KEY and <PROVIDER>_BASE_URL (gauge models lists them)."
    )


eval_command.epilog = _environment_help(eval_command.params)


async def _run(params: dict[str, Any]) -> list[Any]:
    """Flags are the run's layer of settings, -M and --model-config the model's.

    The runner resolves them (gauge.evaluation.settings.resolve_settings):
    provider default < model (-M, --model-config) < task < flags < per call.
    """
    from gauge.evaluation.resume import resume_setup
    from gauge.evaluation.runner import eval_async
    from gauge.evaluation.task import TaskError, load_task, parse_task_args
    from gauge.model.config import GenerateConfig

    config = _build_config(params)
    model_config: GenerateConfig | None = None
    model_args = _key_values(params["model_args"], "-M")
    base_url = params["model_base_url"]
    models: list[Any] = [m.strip() for m in (params["model"] or "").split(",") if m.strip()]
    if params["model"] is not None and not models:
        raise ConfigError(
            "--model is empty; give provider/name, e.g. mock/test or openai/gpt-4o-mini "
            "(or leave it out for GAUGE_MODEL, else hf/gauge-tiny)"
        )
    if params["model_config"]:
        file_model, file_config, file_args, file_url, loose = _model_file(params["model_config"])
        if file_model and not models:
            models = [file_model]
        _check_file_keys(params["model_config"], loose, models)
        model_args = {**file_args, **loose, **model_args}
        base_url = base_url or file_url
        try:
            model_config = GenerateConfig(**file_config)
        except ValueError as ex:
            raise ConfigError(f"--model-config {params['model_config']}: {one_line(ex)}") from None
    # `-M num_concurrent=4 --max-connections 8` names one setting twice: refused here,
    # before a resume merges in what the journal recorded (eval_async checks it too).
    from gauge.model.lm_eval_args import check_conflicts

    check_conflicts(model_args, config)
    task_args = parse_task_args(params["task_args"])
    options: dict[str, Any] = {
        "limit": params["limit"],
        "epochs": params["epochs"],
        "max_samples": params["max_samples"],
        "log_dir": params["log_dir"],
        "max_errors": params["max_errors"],
        "display": params["display"],
    }
    resume: Any = params["resume"]
    if resume:
        setup = resume_setup(
            params["resume"],
            params["task_spec"],
            task_args,
            models,
            model_args,
            config=config,
            model_config=model_config,
        )
        task, models, model_args, base_url = (
            setup.task,
            setup.models,
            setup.model_args,
            base_url or setup.base_url,
        )
        config, model_config, resume = setup.config, setup.model_config, setup.journal
        options.update({k: v for k, v in setup.options.items() if options.get(k) is None})
    elif not params["task_spec"]:
        raise TaskError("give a TASK (e.g. examples/arithmetic.py) or --resume LOG")
    else:
        task = load_task(params["task_spec"], task_args)
    if params["epochs_reducer"]:
        from gauge.evaluation.metrics import reducer

        task.epoch_reducer = reducer(params["epochs_reducer"])
    return await eval_async(
        task,
        models or [None],
        model_base_url=base_url,
        model_args=model_args,
        config=config,
        model_config=model_config,
        resume=resume,
        shared_state=params["shared_state"],
        shared_state_fallback=params["shared_state_fallback"],
        **options,
    )


def _print_results(results: list[Any]) -> None:
    from rich.console import Console

    from gauge.evaluation.results import results_table

    console = Console()
    console.print(results_table(results, console.width))
    for result in results:
        click.echo(f"journal: {result.journal}")
