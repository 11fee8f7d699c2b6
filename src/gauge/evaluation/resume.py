"""Rebuild a run from its journal header, so `gauge eval --resume LOG` needs no other flags.

Secrets were redacted from the header, so masked values (model args, URL
credentials) are not reused: they come back from the environment, -M, or
--model-base-url given with --resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError, one_line
from gauge.evaluation.journal import JournalError, read_journal
from gauge.evaluation.redact import MASK
from gauge.evaluation.task import Task, TaskError, load_task
from gauge.model.config import GenerateConfig


@dataclass(slots=True)
class ResumeSetup:
    """What the journal says to run again."""

    task: Task
    models: list[str]
    model_args: dict[str, Any]
    base_url: str | None
    config: GenerateConfig
    options: dict[str, Any]


def _masked(value: Any) -> bool:
    return isinstance(value, str) and MASK in value


def _unmasked(values: dict[str, Any]) -> dict[str, Any]:
    """`values` without redacted entries (nested dicts such as extra_headers included)."""
    return {
        k: _unmasked(v) if isinstance(v, dict) else v for k, v in values.items() if not _masked(v)
    }


def resume_setup(
    path: str | Path,
    task_spec: str | None,
    task_args: dict[str, Any],
    models: list[str],
    model_args: dict[str, Any],
) -> ResumeSetup:
    """The task, model and settings recorded in `path`, overridden by what the user gave."""
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
    model_info = header.get("model") or {}
    recorded_model = model_info.get("name")
    if models and recorded_model and models != [recorded_model]:
        raise ConfigError(
            f"{path} was run on {recorded_model}; resume it with that model (or drop --model)"
        )
    args = _unmasked(header.get("model_args") or {})
    base_url = model_info.get("base_url")
    try:
        config = GenerateConfig(**_unmasked(header.get("config") or {}))
    except ValueError as ex:
        raise JournalError(f"{path}: recorded config is invalid ({one_line(ex)})") from None
    run = header.get("eval") or {}
    return ResumeSetup(
        task=task,
        models=[recorded_model] if recorded_model else models,
        model_args={**args, **model_args},
        base_url=None if base_url is None or _masked(base_url) else base_url,
        config=config,
        options={
            "limit": run.get("limit"),
            "epochs": run.get("epochs"),
            "max_connections": run.get("max_connections"),
        },
    )
