"""The OpenAI-style batch endpoints of other services: Together and Groq.

Both take a JSONL file through their Files API and a job through `batches`,
under the chat API's base URL, so they are OpenAIBatchAPI with their own data:

    together   {base}/files (purpose "batch-api"), {base}/batches; lines are
               {"custom_id", "body"}; a job comes back wrapped in {"job": ...},
               with status in capitals (VALIDATING, IN_PROGRESS, COMPLETED,
               FAILED, EXPIRED, CANCELLED), `progress` instead of request counts
               and `error` as a string: read into OpenAI's shape here
    groq       {base}/files (purpose "batch"), {base}/batches: OpenAI's shape,
               under https://api.groq.com/openai/v1

Groq's jobs carry the tag in `metadata` and are found as OpenAI's are. Together's
create takes no metadata: the tag goes in the input file's name
(`gauge-<tag>.jsonl`), and `find_job` reads `GET {base}/batches` (a list of jobs)
and, for each job recent enough, `GET {base}/files/{input_file_id}` for its name.

A single request larger than a whole job is a one-line error before anything
is uploaded (`check_size`).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Any

import orjson

from gauge.model.batch.api import BatchItem, BatchLimits
from gauge.model.providers._batch_wire import check_size, too_old
from gauge.model.providers._http import HTTPConnectionError
from gauge.model.providers.openai_compat.batch import OpenAIBatchAPI, file_name


class SizedBatchAPI(OpenAIBatchAPI):
    """OpenAIBatchAPI that refuses one request over the per-job bytes before uploading."""

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        for item in items:
            text = self._lines.get(item.custom_id)
            size = len(text.encode()) if text is not None else self.size(item) - 1
            check_size(self.provider, size, self.limits)
        return await super().submit(items, tag)


class GroqBatchAPI(SizedBatchAPI):
    """Groq's batch API (OpenAI's files + batches, under /openai/v1)."""

    provider = "groq"
    limits = BatchLimits(max_requests=50_000, max_bytes=200_000_000)
    """Groq's documented limits: 50,000 lines and 200 MB per input file."""


class TogetherBatchAPI(SizedBatchAPI):
    """Together AI's batch API (purpose batch-api; its own job object)."""

    provider = "together"
    limits = BatchLimits(max_requests=50_000, max_bytes=100_000_000)
    """Together's documented limits: 50,000 requests and 100 MB per input file."""
    purpose = "batch-api"

    def line(self, item: BatchItem) -> bytes:
        request = item.request
        body = self.chat.body(request.input, request.tools, request.tool_choice, request.config)
        return orjson.dumps({"custom_id": item.custom_id, "body": body})

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        lines = self.take_lines(items)
        data = b"\n".join(lines) + b"\n"
        file_id = await self.upload(data, None, file_name(tag))
        job = {"input_file_id": file_id, "endpoint": self.line_url, "completion_window": "24h"}
        answer, _ = await self.chat.client.post_json(self.batches_path, job)
        return str(together_job(answer)["id"])

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        if not tag:
            return None
        listed, _ = await self.chat.client.get_json(self.batches_path)
        jobs = listed if isinstance(listed, list) else []
        for job in jobs:
            if not isinstance(job, dict) or job.get("id") in known:
                continue
            if too_old(job.get("created_at"), since) or not job.get("input_file_id"):
                continue
            meta, _ = await self.chat.client.get_json(f"{self.files_path}/{job['input_file_id']}")
            if isinstance(meta, dict) and meta.get("filename") == file_name(tag):
                return str(job["id"])
        return None

    async def job(self, job_id: str) -> dict[str, Any]:
        return together_job(await super().job(job_id))


def together_job(answer: Any) -> dict[str, Any]:
    """A Together batch object (or create answer) in OpenAI's shape."""
    job = answer.get("job", answer) if isinstance(answer, dict) else {}
    if not isinstance(job, dict) or "id" not in job:
        raise HTTPConnectionError(f"unexpected together batch answer: {str(answer)[:200]}")
    shaped = dict(job)
    shaped["status"] = str(job.get("status") or "").lower()
    if job.get("error"):
        shaped["errors"] = {"data": [{"message": str(job["error"])}]}
    return shaped
