"""Cancel batch jobs a stopped run left in flight (Ctrl-C's "cancel" in gauge eval).

A job is cancelled through the provider's BatchAPI (`ModelAPI.batch_api()`);
answers it already has stay readable, so a later resume that re-attaches to
it still gets them, and the requests it never answered go into a new job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gauge.errors import one_line
from gauge.model.batch.stage import check_batch

if TYPE_CHECKING:
    from gauge.model.model import Model


async def cancel_jobs(model: Model, job_ids: Sequence[str]) -> dict[str, str | None]:
    """Ask the provider to cancel each job; job id -> None (asked) or why it failed.

    Uses `model`'s first replica (a pool's jobs are cancelled through it) and
    closes the model's connections afterwards.
    """
    batch_api = check_batch(model.api)

    async def cancel(job_id: str) -> str | None:
        try:
            await batch_api.cancel(job_id)
        except Exception as ex:  # reported per job: the others are still cancelled
            return one_line(ex)
        return None

    try:
        answers = await asyncio.gather(*(cancel(job_id) for job_id in job_ids))
    finally:
        await model.close()
    return dict(zip(job_ids, answers, strict=True))
