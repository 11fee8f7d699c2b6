"""Mistral batch inference: a JSONL file uploaded, then a job that reads it.

    POST /v1/files                      multipart: purpose=batch, file=<JSONL>
    POST /v1/batch/jobs                 {"input_files": [file id], "model",
                                         "endpoint": "/v1/chat/completions", "metadata"}
    GET  /v1/batch/jobs/{id}            status QUEUED | RUNNING | SUCCESS | FAILED |
                                        TIMEOUT_EXCEEDED | CANCELLATION_REQUESTED |
                                        CANCELLED; output_file, error_file, counts
    GET  /v1/files/{id}/content         the output and error files (JSONL)
    POST /v1/batch/jobs/{id}/cancel
    GET  /v1/batch/jobs?page=N&page_size=100&created_after=<ISO time>
                                        {"data": [...], "total"}: find_job reads the
                                        job's `metadata.gauge_token` (its tag)

Each line is {"custom_id", "body"}, the body `request.py` builds (without the
model: the job names it). A result line is {"custom_id", "response":
{"status_code", "body"}, "error"}: a 2xx body goes through `response.py`, any
other through `errors.py` (429 and 5xx: retryable). TIMEOUT_EXCEEDED is an
expired job; its output file holds the answers it finished.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from gauge.model.batch.api import (
    FIND_SLACK,
    TAG_KEY,
    BatchItem,
    BatchLimits,
    BatchResults,
    BatchState,
    BatchStatus,
    ItemError,
)
from gauge.model.providers import _batch_wire
from gauge.model.providers._batch_wire import LineBatchAPI, job_headers, read_jsonl
from gauge.model.providers._files import get_bytes, post_bytes
from gauge.model.providers._http import HTTPStatusError, error_message
from gauge.model.providers._multipart import multipart_body
from gauge.model.providers.mistral.errors import MistralResponseError, classify
from gauge.model.providers.mistral.request import build_body
from gauge.model.providers.mistral.response import parse_completion

if TYPE_CHECKING:
    from gauge.model.providers.mistral import MistralAPI

STATES: dict[str, BatchState] = {
    "QUEUED": "validating",
    "RUNNING": "in_progress",
    "SUCCESS": "completed",
    "FAILED": "failed",
    "TIMEOUT_EXCEEDED": "expired",
    "CANCELLATION_REQUESTED": "cancelling",
    "CANCELLED": "cancelled",
}


class MistralBatchAPI(LineBatchAPI):
    """Mistral chat requests through La Plateforme's batch jobs (half price)."""

    provider = "mistral"
    limits = BatchLimits(max_requests=100_000, max_bytes=512_000_000)
    """Mistral's documented limits: 100,000 requests and a 512 MB file per batch."""

    def __init__(self, api: MistralAPI) -> None:
        self.api = api
        self._lines: dict[str, str] = {}

    def line(self, item: BatchItem) -> bytes:
        """The item's JSONL line (without its newline)."""
        request = item.request
        body = build_body(
            self.api.model_name,
            request.input,
            request.tools,
            request.tool_choice,
            request.config,
            self.api.safe_prompt,
        )
        body.pop("model", None)
        return orjson.dumps({"custom_id": item.custom_id, "body": body})

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        headers = job_headers(self.provider, items)
        lines = self.take_lines(items)
        content = b"\n".join(lines) + b"\n"
        body, content_type = multipart_body({"purpose": "batch"}, "file", "batch.jsonl", content)
        uploaded = await post_bytes(self.api._client, "files", body, content_type)
        job = {
            "input_files": [_field(uploaded, "id")],
            "model": self.api.model_name,
            "endpoint": "/v1/chat/completions",
            "metadata": {"source": "gauge", **({TAG_KEY: tag} if tag else {})},
        }
        created, _ = await self.api._client.post_json("batch/jobs", job, headers=headers)
        return str(_field(created, "id"))

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        if not tag:
            return None
        after = datetime.fromtimestamp(since - FIND_SLACK, UTC).isoformat()
        page, seen = 0, 0
        while True:
            query = urlencode(
                {"page": page, "page_size": _batch_wire.LIST_PAGE, "created_after": after}
            )
            listed, _ = await self.api._client.get_json(f"batch/jobs?{query}")
            jobs = listed.get("data") if isinstance(listed, dict) else None
            if not isinstance(jobs, list) or not jobs:
                return None
            for job in jobs:
                if isinstance(job, dict) and (job.get("metadata") or {}).get(TAG_KEY) == tag:
                    return str(job["id"])
            seen += len(jobs)
            if seen >= int(listed.get("total") or 0):
                return None
            page += 1

    async def status(self, job_id: str) -> BatchStatus:
        return job_status(await self._get(job_id))

    async def results(self, job_id: str) -> BatchResults:
        job = await self._get(job_id)
        results = BatchResults()
        for key in ("output_file", "error_file"):
            if job.get(key):
                raw = await get_bytes(self.api._client, f"files/{job[key]}/content")
                add_results(results, raw, self.api.model_name)
        return results

    async def cancel(self, job_id: str) -> None:
        await self.api._client.post_json(f"batch/jobs/{job_id}/cancel", {})

    async def _get(self, job_id: str) -> dict[str, Any]:
        job, _ = await self.api._client.get_json(f"batch/jobs/{job_id}")
        if not isinstance(job, dict):
            raise MistralResponseError(f"unexpected batch job: {str(job)[:200]}")
        return job


def job_status(job: dict[str, Any]) -> BatchStatus:
    """A Mistral batch job -> BatchStatus in OpenAI's words."""
    raw = str(job.get("status"))
    state = STATES.get(raw)
    errors = job.get("errors") or []
    messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    message = "; ".join(messages) or None
    if state is None:
        state, message = "failed", f"unknown batch job status {raw!r}"
    return BatchStatus(
        state,
        total=int(job.get("total_requests") or 0),
        completed=int(job.get("succeeded_requests") or 0),
        failed=int(job.get("failed_requests") or 0),
        message=message,
    )


def add_results(results: BatchResults, raw: bytes, model: str) -> None:
    """Add the lines of an output or error file to `results`."""
    for entry in read_jsonl(raw, "mistral batch results"):
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str):
            continue
        response = entry.get("response")
        response = response if isinstance(response, dict) else {}
        status = response.get("status_code")
        body = response.get("body")
        if isinstance(status, int) and status < 300 and isinstance(body, dict):
            results.outputs[custom_id] = parse_completion(body, model)
        else:
            results.errors[custom_id] = item_error(status, body, entry.get("error"))


def item_error(status: Any, body: Any, error: Any) -> ItemError:
    """A failed line -> ItemError, classified as the real-time answer would be."""
    exception: Exception
    if isinstance(status, int):
        message = error_message(body if body is not None else error)
        exception = HTTPStatusError(status, message, body)
        text = f"HTTP {status}: {message}"
    else:
        text = error_message(error) if error is not None else "no response in the batch"
        exception = MistralResponseError(text)
    decision = classify(exception)
    return ItemError(text, status if isinstance(status, int) else None, decision.retryable)


def azure_refused() -> str:
    """The one-line error for `batch` on Azure-hosted Mistral."""
    return (
        "Azure-hosted Mistral has no batch endpoint; batch works with Mistral's own API "
        "(MISTRAL_API_KEY, https://api.mistral.ai): use it for batch, or remove batch "
        "(--batch) for this model"
    )


def _field(answer: Any, name: str) -> Any:
    if not isinstance(answer, dict) or name not in answer:
        raise MistralResponseError(f"unexpected answer: {str(answer)[:200]}")
    return answer[name]
