"""Pre-flight: what an eval checks after building its models and before the first request.

Each mistake is one line that says what to do, found in well under a second,
before a journal is written or a sample sent:

- a config field the provider does not honour, for the run's resolved config
  (the check `Model` makes per call, made once up front);
- an `at_least_K` epoch reducer with fewer than K epochs;
- a local `hf/` model that is not on this machine (not the bundled model, not a
  directory, not in the Hugging Face cache), instead of retries against a hub;
- a response cache directory that is a file;
- `batch` on a provider without a batch endpoint;
- a log directory that is a file or cannot be written;
- on `--resume`, a setting that changes results given a different value than the
  journal recorded (`check_resume`).

Model args are checked where the model is built (`gauge.model.lm_eval_args`),
task arguments where the task is (`gauge.evaluation.task`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from gauge.errors import ConfigError
from gauge.evaluation.journal import Journal, dumps
from gauge.evaluation.redact import MASK
from gauge.evaluation.task import Task
from gauge.model.config import ADVISORY_FIELDS, GenerateConfig
from gauge.model.model import Model

Resolve = Callable[[Model, Task], GenerateConfig]
"""The run's resolved config for (model, task): `settings.resolve_settings(...).resolved`."""


def check_run(
    tasks: Sequence[Task],
    models: Sequence[Model],
    resolve: Resolve,
    epochs: int | None,
    log_dir: str | Path | None,
) -> None:
    """Every check but the resume one; `log_dir` None: a resume (the journal exists)."""
    for task in tasks:
        check_epochs(task, epochs or task.epochs)
    for model in models:
        check_local_weights(model)
        for task in tasks:
            resolved = resolve(model, task)
            # Raises UnsupportedConfig, as the first request would (or warns and drops,
            # with drop_unsupported).
            model._check_supported(resolved)
            if resolved.cache:
                from gauge.model.cache.api import check_cache_dir

                check_cache_dir()
            if resolved.batch:
                from gauge.model.batch.stage import check_batch

                check_batch(model.api)  # a provider without batch jobs: one line, now
    if log_dir is not None:
        check_log_dir(log_dir)


def check_epochs(task: Task, epochs: int) -> None:
    """An `at_least_K` reducer needs K epochs or more."""
    name = task.epoch_reducer.name
    if name.startswith("at_least_") and name[9:].isdigit() and int(name[9:]) > epochs:
        k = int(name[9:])
        raise ConfigError(
            f"epoch reducer {name} needs at least {k} epochs, but task {task.name} runs "
            f"{epochs}; add --epochs {k}, or use mean, mode or max"
        )


def check_local_weights(model: Model) -> None:
    """An hf model must be on this machine (or downloads must be asked for)."""
    from gauge.model.providers.hf.loading import LoadSpec

    spec = getattr(model.api, "spec", None)
    if isinstance(spec, LoadSpec):
        from gauge.model.providers.hf.loading import missing_weights

        reason = missing_weights(spec)
        if reason is not None:
            raise ConfigError(reason)


def check_log_dir(log_dir: str | Path) -> None:
    """The journals' folder is a folder (or can be made one) that we may write to."""
    path = Path(log_dir).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        which = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise ConfigError(
            f"--log-dir {log_dir} {which}; give a folder for the journals (default: logs)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write journals to --log-dir {log_dir}: {existing} is not writable; "
            "give another folder"
        )


# -- resume ---------------------------------------------------------------------------------

RESUMABLE_FIELDS = frozenset(
    {
        "max_connections",
        "max_retries",
        "timeout",
        "attempt_timeout",
        "rpm",
        "tpm",
        "cache",
        "extra_headers",  # tracing, auth: how a request is sent (a resume may tag its launch)
    }
    | ADVISORY_FIELDS
)
"""GenerateConfig fields a resume may change: how requests are sent, not what they ask."""

RESUMABLE_MODEL_ARGS = frozenset(
    {
        "num_concurrent",
        "max_retries",
        "timeout",
        "max_connections",
        "base_url",
        "proxy",
        "batch_size",
        "threads",
        "device",
        "token",
        "cache_dir",
        "local_files_only",
        "latency",
        "retry_after",
    }
)
"""Model args a resume may change: where and how fast the model runs, not what it answers."""

RESUMABLE = (
    "connections, samples in flight, retries, timeouts, rpm/tpm, cache, headers, base URL, "
    "--limit, --epochs, --max-errors, display and logs"
)


def check_resume(
    journal: Journal,
    task: Task,
    model: Model,
    resolved: GenerateConfig,
    model_args: dict[str, Any],
) -> None:
    """Refuse a resume whose settings would change results against what `journal` recorded.

    Settings that only change how requests are sent (RESUMABLE_FIELDS,
    RESUMABLE_MODEL_ARGS), limits, display and logs may differ; redacted values
    are not compared (they must be given again).
    """
    header = journal.header
    task_info = header.get("task") or {}
    model_info = header.get("model") or {}
    latest = journal.settings
    changes: list[tuple[str, Any, Any]] = [
        ("task", task_info.get("name"), task.name),
        ("model", model_info.get("name"), model.name),
        ("epoch reducer", task_info.get("epoch_reducer"), task.epoch_reducer.name),
    ]
    changes += _differences("-T ", task_info.get("args") or {}, task.args, frozenset())
    recorded_args = latest["model_args"] if "model_args" in latest else header.get("model_args")
    changes += _differences("-M ", recorded_args or {}, model_args, RESUMABLE_MODEL_ARGS)
    recorded_config = latest.get("resolved_config")
    if isinstance(recorded_config, dict):
        changes += _differences("", recorded_config, resolved.set_fields(), RESUMABLE_FIELDS)
    for name, was, now in changes:
        if was is not None and not _same(was, now):
            raise ConfigError(
                f"{journal.path} ran with {_show(name, was)}; resuming with {_show(name, now)} "
                f"would change its results: drop it, or start a new run without --resume "
                f"(a resume may change only {RESUMABLE})"
            )


def _differences(
    prefix: str, recorded: dict[str, Any], current: dict[str, Any], free: frozenset[str]
) -> list[tuple[str, Any, Any]]:
    """(name, recorded, current) for each name either side sets, `free` ones left out.

    A name set only now is recorded as "" so that it differs (None means "not compared").
    """
    out = []
    for name in sorted(set(recorded) | set(current)):
        if name in free:
            continue
        was = recorded.get(name, "")
        now = _json(current[name]) if name in current else ""
        out.append((f"{prefix}{name}", was, now))
    return out


def _json(value: Any) -> Any:
    """`value` as the journal holds it (tuples as lists, models as dicts, ...)."""
    return orjson.loads(dumps({"v": value}))["v"]


def _same(was: Any, now: Any) -> bool:
    """Equal, where a redacted recorded value (or entry) matches anything."""
    if isinstance(was, str) and MASK in was:
        return True
    if isinstance(was, dict) and isinstance(now, dict):
        return all(_same(was.get(k, ""), now.get(k, "")) for k in set(was) | set(now))
    return bool(was == now)


def _show(name: str, value: Any) -> str:
    if value == "":
        return f"no {name}"
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return f"{name} {text}" if name in ("task", "model", "epoch reducer") else f"{name}={text}"
