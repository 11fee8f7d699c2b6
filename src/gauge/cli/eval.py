"""`gauge eval TASK --model provider/name`: run a task, journal it, print the results.

Every flag has a GAUGE_<FLAG> environment twin (e.g. GAUGE_LIMIT, GAUGE_TEMPERATURE),
and a `.env` file found from the working directory upward is read first.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from gauge.cli.config_flags import build_config, config_options
from gauge.errors import ConfigError, one_line


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
    if isinstance(data.get("model"), dict):
        data = _typed_block(path, data["model"])
    model = data.pop("model", None)
    base_url = data.pop("base_url", None)
    config = dict(data.pop("config", None) or {})
    args = dict(data.pop("args", None) or {})
    loose: dict[str, Any] = {}
    for key, value in data.items():
        (config if key in GenerateConfig.model_fields else loose)[key] = value
    return model, config, args, base_url, loose


def _typed_block(path: str, block: dict[str, Any]) -> dict[str, Any]:
    """insideLLMs' `model: {type: openai, args: {model_name: gpt-4o, ...}}` as this file's keys
    (the run file's other blocks are not the model's)."""
    block = dict(block)
    if "type" not in block:
        return block  # model: {model: provider/name, ...}
    provider = block.pop("type")
    args = dict(block.pop("args", None) or {})
    name = args.pop("model_name", None) or args.pop("model", None)
    if not name:
        raise ConfigError(f"--model-config {path}: the model block needs args: {{model_name: ...}}")
    return {**block, **args, "model": f"{provider}/{name}"}


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
            "--model-args",
            "--model_args",
            "model_args",
            multiple=True,
            metavar="NAME=VALUE",
            envvar="GAUGE_MODEL_ARGS",
            help="Model argument (repeatable): name=value, name:value, or 'a=1,b=2'.",
        ),
        click.option(
            "--apply-chat-template",
            "--apply_chat_template",
            "apply_chat_template",
            is_flag=True,
            default=None,
            envvar="GAUGE_APPLY_CHAT_TEMPLATE",
            help="Completions endpoints: render prompts with the chat template (lm-eval's flag).",
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
            "--cost-limit",
            type=click.FloatRange(min=0, min_open=True),
            metavar="USD",
            envvar="GAUGE_COST_LIMIT",
            help="Stop starting samples before a run's spend would pass USD (resumable).",
        ),
        click.option(
            "--model-cost-config",
            type=click.Path(dir_okay=False),
            envvar="GAUGE_MODEL_COST_CONFIG",
            help="YAML/JSON file of model prices, over the shipped snapshot (docs/cost.md).",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            default=False,
            envvar="GAUGE_DRY_RUN",
            help="Estimate tokens and cost per model; send nothing.",
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
    from gauge.evaluation.batches import take_left_running
    from gauge.evaluation.runner import EvalError, take_interrupted

    take_interrupted()
    take_left_running()  # (in process, a run before this one may have left some)
    try:
        results = asyncio.run(_run(params))
    except EvalError as ex:
        if ex.results:  # the runs that finished still get their table
            _print_results(ex.results)
        raise
    except KeyboardInterrupt:  # Ctrl-C: say where the journal is and how to go on
        for path in take_interrupted():
            click.echo(f"journal kept at {path}\nresume with: {_resume_command(path)}", err=True)
        _left_batches(os.isatty(0))
        raise
    if results:  # a --dry-run has none
        _print_results(results)


def _left_batches(interactive: bool) -> None:
    """Ctrl-C with batch jobs in flight: leave them running (the default) or cancel them."""
    from gauge.evaluation.batches import left_summary, take_left_running
    from gauge.model.batch.cancel import cancel_jobs

    left = take_left_running()
    if not left:
        return
    what = left_summary(left)
    later = " and ".join(_resume_command(entry.journal) for entry in left)
    answer = "leave"
    if interactive:
        choice = click.Choice(["l", "leave", "c", "cancel"], case_sensitive=False)
        question = f"leave {what} running (resume later with {later}) [L]eave/[c]ancel"
        try:
            answer = click.prompt(
                question, "l", type=choice, show_default=False, show_choices=False, err=True
            )
        except click.Abort:  # a second Ctrl-C or end of input: the default
            click.echo("", err=True)
    if not answer.lower().startswith("c"):
        click.echo(f"left {what} running; {later} re-attaches to them", err=True)
        return
    for entry in left:
        answers = asyncio.run(cancel_jobs(entry.model, [job.job_id for job in entry.jobs]))
        for job_id, error in answers.items():
            click.echo(f"batch {job_id}: " + (error or "cancel requested"), err=True)


def _resume_command(path: str) -> str:
    import shlex

    return f"gauge eval --resume {shlex.quote(path)}"


eval_command.params.extend(config_options())


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
    from gauge.model.cost import clear_overrides, load_overrides

    clear_overrides()  # each invocation prices with its own file only
    if params["model_cost_config"]:  # prices first: every model built below uses them
        load_overrides(params["model_cost_config"])
    config = build_config(params)
    model_config: GenerateConfig | None = None
    from gauge.cli.model_args import parse_model_args

    model_args = parse_model_args(params["model_args"])
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
    from gauge.cli.model_args import lm_eval_names
    from gauge.model.lm_eval_args import check_conflicts

    models, model_args = lm_eval_names(models, model_args, params.get("apply_chat_template"))
    check_conflicts(model_args, config)
    task_args = parse_task_args(params["task_args"])
    options: dict[str, Any] = {
        "limit": params["limit"],
        "epochs": params["epochs"],
        "max_samples": params["max_samples"],
        "log_dir": params["log_dir"],
        "max_errors": params["max_errors"],
        "display": params["display"],
        "cost_limit": params["cost_limit"],
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
    if params["dry_run"]:
        from gauge.evaluation.dry_run import dry_run

        if resume:
            raise ConfigError("--dry-run estimates a new run; leave out --resume")
        limits = (options["limit"], options["epochs"])
        args = (task, models or [None], config, model_config, base_url, model_args, *limits)
        click.echo(await dry_run(*args))
        return []
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

    from gauge.evaluation.results import results_table, total_cost

    console = Console()
    console.print(results_table(results, console.width))
    click.echo(total_cost(results))
    for result in results:
        click.echo(f"journal: {result.journal}")
