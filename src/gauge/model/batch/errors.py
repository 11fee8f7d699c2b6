"""The errors a batched request can end with (both are ModelErrors, like a failed call)."""

from __future__ import annotations

from gauge.errors import ModelError


class BatchJobFailed(ModelError):
    """The provider ended a job as failed (it refused the job as a whole)."""


class BatchItemFailed(ModelError):
    """The provider answered one request of a job with an error that retrying won't fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
