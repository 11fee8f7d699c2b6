"""BatchConfig: how `generate` calls are collected into provider batch jobs.

`GenerateConfig.batch` takes `True` (the defaults below), a batch size (an int),
a dict of these fields, or a BatchConfig; `False` or `None` sends every request
in real time. The names follow Inspect AI's `BatchConfig`; `max_tick` is ours
(the cap the poll interval grows to).

Kept free of heavy imports: GenerateConfig validates its `batch` field here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gauge.errors import one_line


class BatchConfig(BaseModel):
    """Settings of provider batch jobs (about half price, answers within 24 hours)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(default=100, ge=1)
    """Requests per job (fewer when `send_delay` passes first or a provider limit is lower)."""
    send_delay: float = Field(default=15.0, ge=0)
    """Seconds to wait for more requests before sending a partly filled job."""
    tick: float = Field(default=15.0, gt=0)
    """Seconds between the first polls of a job; the interval grows to `max_tick`."""
    max_tick: float = Field(default=120.0, gt=0)
    """The longest interval between two polls of one job."""
    max_batches: int = Field(default=100, ge=1)
    """Jobs in flight at once per model; further requests wait for one to finish."""
    max_size_mb: float | None = Field(default=None, gt=0)
    """Most megabytes of requests per job (the provider's own limit applies too)."""

    @property
    def max_bytes(self) -> int | None:
        """`max_size_mb` in bytes, or None for the provider's limit only."""
        return None if self.max_size_mb is None else int(self.max_size_mb * 1024 * 1024)


def batch_value(value: Any) -> Any:
    """A `batch` setting as pydantic validates it: True becomes the default
    BatchConfig, an int a BatchConfig of that size; a dict is validated as a
    BatchConfig; False and None stay (off). Any other value is a ValueError."""
    if value is True:
        return BatchConfig()
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"batch={value}: give a batch size >= 1, True or False")
        return BatchConfig(size=value)
    if isinstance(value, dict):
        try:
            return BatchConfig(**value)
        except ValidationError as ex:
            raise ValueError(f"batch: {one_line(ex)}") from None
    if value is None or isinstance(value, bool | BatchConfig):
        return value
    raise ValueError(
        f"batch={value!r}: give True, False, a batch size (int) or a BatchConfig "
        "(size, send_delay, tick, max_tick, max_batches, max_size_mb)"
    )


def batch_setting(value: object) -> BatchConfig | None:
    """The BatchConfig a config's `batch` value means, or None when batching is off."""
    if value is None or value is False:
        return None
    if isinstance(value, BatchConfig):
        return value
    if isinstance(value, dict):
        return BatchConfig(**value)
    normal = batch_value(value)
    return normal if isinstance(normal, BatchConfig) else None
