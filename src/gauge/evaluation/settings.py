"""A run's settings: the config layers (model < task < run) and what they resolve to.

`resolve_settings` is the one place they are resolved; the runner, pre-flight and
resume use it, and the journal header records `settings_record` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gauge.errors import ConfigError
from gauge.model.batch.config import batch_setting
from gauge.model.config import GenerateConfig
from gauge.model.model import Model

PIPELINE_SETTINGS = (
    "max_connections",
    "max_retries",
    "timeout",
    "attempt_timeout",
    "rpm",
    "tpm",
    "cache",
)
"""The settings the journal header records as resolved (its "pipeline" section)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The config layers of one run and what they resolve to.

    Precedence, lowest first: provider default < `model` (get_model's config,
    -M, --model-config) < `task` (Task.config) < `run` (eval()'s config= and
    keywords, command-line flags) < per call (a solver's generate(config=...)).
    """

    model: GenerateConfig
    task: GenerateConfig
    run: GenerateConfig
    run_config: GenerateConfig
    """task < run: what the run passes with each call (the model adds its own below it)."""
    resolved: GenerateConfig
    """model < task < run: what each call uses unless it passes its own config."""

    def layers(self) -> dict[str, dict[str, Any]]:
        """The set fields of each layer (for the journal)."""
        return {
            "model": self.model.set_fields(),
            "task": self.task.set_fields(),
            "run": self.run.set_fields(),
        }

    def pipeline(self) -> dict[str, Any]:
        """The resolved pipeline settings; None is the default (max_connections: adaptive)."""
        return {name: getattr(self.resolved, name) for name in PIPELINE_SETTINGS}


def resolve_settings(
    model: GenerateConfig, task: GenerateConfig, run: GenerateConfig | None = None
) -> Settings:
    """The one resolution of a run's settings: model < task < run (see `Settings`)."""
    run = run or GenerateConfig()
    run_config = task.merge(run)
    return Settings(model, task, run, run_config, model.merge(run_config))


def samples_in_flight(model: Model, settings: Settings, max_samples: int | None = None) -> int:
    """How many samples may send at once: `max_samples`, else the resolved max_connections.

    With neither, the key's concurrency adapts (gauge.model.rate) from the
    provider's default up to its max_connections_limit(): that many samples are
    kept in flight so it has demand to grow into (the provider's default would
    otherwise be a ceiling). With `batch` on, requests in a job take no
    connection, so enough samples to fill every job are kept in flight instead:
    `size` x `max_batches` (the runner bounds it by the samples left).
    """
    if max_samples is not None:
        if max_samples < 1:
            raise ConfigError(f"max_samples must be at least 1, got {max_samples}")
        return max_samples
    if (batch := batch_setting(settings.resolved.batch)) is not None:
        return batch.size * batch.max_batches
    return settings.resolved.max_connections or model.api.max_connections_limit()


def settings_record(settings: Settings) -> dict[str, Any]:
    """What the journal header records of a run's settings."""
    return {
        # task < run: what each call passes (a resume of an old journal restores it)
        "config": settings.run_config.set_fields(),
        "config_layers": settings.layers(),
        # What the provider receives: model < task < run.
        "resolved_config": settings.resolved.set_fields(),
        "pipeline": settings.pipeline(),
    }
