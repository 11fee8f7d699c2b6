"""Rebuild a run from its journal header, so `gauge eval --resume LOG` needs no other flags.

Settings come back to the layer they were given at (see
`gauge.evaluation.settings.resolve_settings`): the model's layer (its config,
-M, --model-config) and the run's layer (eval() keywords, flags); the task's
comes from the task again. So the resumed run resolves to the values the
journal recorded, unless the resume command gives a setting again: a flag, a
-M alias (num_concurrent=...) or a --model-config value replaces the recorded
value of that setting at every layer, and then the usual precedence applies.
The latest record wins: a "resume" line records the settings that part ran
with, so a second resume continues with them.

Only settings that do not change results may be given a new value (connections,
retries, timeouts, rate budgets, cache, base URL, limits, display, logs): the
runner's pre-flight (`gauge.evaluation.preflight.check_resume`) refuses any
other change, such as a temperature, a task argument or a model arg, in one line.

Secrets were redacted from the header, so masked values (model args, URL
credentials) are not reused: they come back from the environment, -M, or
--model-base-url given with --resume.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError, one_line
from gauge.evaluation.journal import Journal, JournalError, read_journal
from gauge.evaluation.metrics import reducer
from gauge.evaluation.redact import MASK
from gauge.evaluation.task import Task, TaskError, load_task
from gauge.model.config import GenerateConfig
from gauge.model.lm_eval_args import CONFIG_ARGS


@dataclass(slots=True)
class ResumeSetup:
    """What the journal says to run again."""

    task: Task
    models: list[str]
    model_args: dict[str, Any]
    base_url: str | None
    config: GenerateConfig
    """The run's layer: recorded, overridden by the resume command's flags."""
    options: dict[str, Any]
    model_config: GenerateConfig | None = None
    """The model's layer: recorded, overridden by the resume command's --model-config."""
    journal: Journal | None = None
    """The journal read (handed on to the runner, so it is read once)."""


def _masked(value: Any) -> bool:
    return isinstance(value, str) and MASK in value


def _unmasked(values: dict[str, Any]) -> dict[str, Any]:
    """`values` without redacted entries (nested dicts such as extra_headers included)."""
    return {
        k: _unmasked(v) if isinstance(v, dict) else v for k, v in values.items() if not _masked(v)
    }


def _aliased(model_args: dict[str, Any]) -> set[str]:
    """The GenerateConfig fields that lm-eval names among `model_args` set (num_concurrent...)."""
    return {field for name, field in CONFIG_ARGS.items() if name in model_args}


def _layer(path: str | Path, values: dict[str, Any], what: str) -> GenerateConfig:
    try:
        return GenerateConfig(**values)
    except ValueError as ex:
        raise JournalError(f"{path}: recorded {what} is invalid ({one_line(ex)})") from None


def resume_setup(
    path: str | Path,
    task_spec: str | None,
    task_args: dict[str, Any],
    models: list[str],
    model_args: dict[str, Any],
    config: GenerateConfig | None = None,
    model_config: GenerateConfig | None = None,
) -> ResumeSetup:
    """The task, model and settings recorded in `path`, overridden by what the user gave.

    `model_args`, `config` (flags) and `model_config` (--model-config) are what
    the resume command gives.
    """
    journal = read_journal(path)
    header = journal.header
    task_info = header.get("task") or {}
    spec = task_spec or task_info.get("spec")
    if not spec:
        raise TaskError(
            f"{path}: its task was not loaded from a file; give the TASK again with --resume"
        )
    recorded_args = {k: v for k, v in (task_info.get("args") or {}).items() if not _masked(v)}
    task = load_task(spec, {**recorded_args, **task_args})
    if task.name != task_info.get("name") and task_spec is None:
        raise JournalError(f"{path}: task {task_info.get('name')!r} no longer loads from {spec}")
    if isinstance(task_info.get("epoch_reducer"), str):  # as --epochs-reducer set it
        # (A Reducer object given in Python has no name to rebuild: the task's own stays.)
        with contextlib.suppress(ConfigError):
            task.epoch_reducer = reducer(task_info["epoch_reducer"])
    model_info = header.get("model") or {}
    recorded_model = model_info.get("name")
    if models and recorded_model and models != [recorded_model]:
        raise ConfigError(
            f"{path} was run on {recorded_model}; resume it with that model (or drop --model)"
        )
    latest = journal.settings
    config = config or GenerateConfig()
    # Settings the resume command gives again, under any name: the recorded ones give way.
    given = set(config.model_fields_set) | _aliased(model_args)
    if model_config is not None:
        given |= model_config.model_fields_set
    saved_args = latest["model_args"] if "model_args" in latest else header.get("model_args")
    args = _unmasked(saved_args or {})
    args = {k: v for k, v in args.items() if CONFIG_ARGS.get(k) not in given}
    args.update(model_args)
    base_url = model_info.get("base_url")
    layers = latest.get("config_layers")
    if isinstance(layers, dict):
        run_values = _unmasked(layers.get("run") or {})
        # What -M aliases give is rebuilt from them (a clash otherwise, if they changed).
        model_values = _unmasked(layers.get("model") or {})
        model_values = {k: v for k, v in model_values.items() if k not in given | _aliased(args)}
    else:  # a journal from before config layers: its config is task < run
        run_values = _unmasked(header.get("config") or {})
        recorded = (header.get("eval") or {}).get("max_connections")
        if recorded is not None:
            run_values.setdefault("max_connections", recorded)
        # A field both here and under a -M alias came from the task (a flag and the
        # alias together were refused): the task gives it again.
        run_values = {k: v for k, v in run_values.items() if k not in _aliased(args)}
        model_values = {}
    run_values = {k: v for k, v in run_values.items() if k not in given}
    run = _layer(path, run_values, "config").merge(config)
    model_layer = _layer(path, model_values, "model config").merge(model_config)
    run_info = header.get("eval") or {}
    return ResumeSetup(
        task=task,
        models=[recorded_model] if recorded_model else models,
        model_args=args,
        base_url=None if base_url is None or _masked(base_url) else base_url,
        config=run,
        options={"limit": run_info.get("limit"), "epochs": run_info.get("epochs")},
        model_config=model_layer if model_layer.model_fields_set else None,
        journal=journal,
    )
