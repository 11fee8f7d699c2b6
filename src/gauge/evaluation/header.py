"""A run's journal: where it goes (`journal_path`) and its header line."""

from __future__ import annotations

import contextlib
import functools
import platform
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gauge.evaluation.journal_schema import SCHEMA_VERSION
from gauge.evaluation.redact import Redactor
from gauge.evaluation.settings import Settings, settings_record
from gauge.evaluation.task import Task
from gauge.model.model import Model


def _versions() -> dict[str, str]:
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str]:
    # Once per process, and read from the Version line: importlib's version() parses
    # each METADATA file whole with the email parser (~9 ms for these six, at the
    # start of every eval), while the line is near its top.
    from importlib.metadata import PackageNotFoundError, distribution

    out = {"python": platform.python_version()}
    for name in ("gauge", "pydantic", "aiohttp", "orjson", "rich", "openai"):
        with contextlib.suppress(PackageNotFoundError):
            dist = distribution(name)
            for line in (dist.read_text("METADATA") or "").splitlines():
                if line.startswith("Version:"):
                    out[name] = line.removeprefix("Version:").strip()
                    break
                if not line:  # end of the headers
                    break
            out.setdefault(name, dist.version)
    return out


def journal_path(log_dir: str | Path, task: str, model: str) -> Path:
    """A new journal file name: time, task and model, plus a short random suffix."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
    safe_model = "".join(c if c.isalnum() or c in "-." else "_" for c in model)
    safe_task = "".join(c if c.isalnum() or c in "-." else "_" for c in task)
    return Path(log_dir) / f"{stamp}_{safe_task}_{safe_model}_{uuid.uuid4().hex[:6]}.jsonl"


def journal_header(
    task: Task,
    model: Model,
    model_args: dict[str, Any],
    settings: Settings,
    run: dict[str, Any],
    samples: int,
    redactor: Redactor,
) -> dict[str, Any]:
    """The journal's first line (redacted): task, model, settings, the run, versions."""
    info = model.info()
    header: dict[str, Any] = redactor.collect(
        {
            "type": "header",
            "schema_version": SCHEMA_VERSION,  # docs/journal.md: versioning
            "created": datetime.now(UTC).isoformat(),
            "task": {
                "name": task.name,
                "spec": task.spec,
                "args": task.args,
                "dataset": task.dataset.location or task.dataset.name,
                "samples": samples,
                "epochs": run["epochs"],
                "epoch_reducer": task.epoch_reducer.name,
                "scorers": [s.name for s in task.scorers],
                "metadata": task.metadata,
            },
            "model": info,
            "model_args": model_args,
            **settings_record(settings),
            "eval": run,
            "versions": _versions(),
        }
    )
    return header
