"""Gemini API batch mode, with inlined requests: a job is one POST holding them all.

    POST v1beta/models/{model}:batchGenerateContent
         {"batch": {"displayName", "model", "inputConfig": {"requests": {"requests":
         [{"request": <generateContent body>, "metadata": {"key": custom_id}}]}}}}
         -> an Operation named batches/{id}: the job id
    GET  v1beta/batches/{id}          the Operation: metadata.state BATCH_STATE_*,
                                      metadata.batchStats, and once done
                                      metadata.output.inlinedResponses.inlinedResponses
    POST v1beta/batches/{id}:cancel
    GET  v1beta/batches?pageSize=100&pageToken=...   {"operations": [...], "nextPageToken"}

A job's `displayName` is `gauge-<tag>`: `find_job` lists the batches and matches
it (the Gemini API has no batch labels to filter on).

Each request is the body `request.py` builds; each inlined response goes
through `response.py`, each inlined error (a google.rpc.Status) through
`errors.py` (RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL...: retryable).
Responses come in the order of the requests; where a response carries no
`metadata.key` its custom_id is found by that order (kept from `submit`, or
read back from the batch's own inputConfig after a restart), but only when
every request has a response; otherwise it stays unanswered and is sent again. The Vertex AI
batch API (GCS or BigQuery in and out) is another API: see `vertex_refused`.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from gauge.model.batch.api import (
    BatchItem,
    BatchLimits,
    BatchResults,
    BatchState,
    BatchStatus,
    ItemError,
)
from gauge.model.providers import _batch_wire
from gauge.model.providers._batch_wire import LineBatchAPI, job_headers, too_old
from gauge.model.providers._files import post_bytes
from gauge.model.providers.google.errors import GoogleResponseError, classify
from gauge.model.providers.google.request import build_body
from gauge.model.providers.google.response import parse_response

if TYPE_CHECKING:
    from gauge.model.providers.google import GoogleAPI

STATES: dict[str, BatchState] = {
    "UNSPECIFIED": "validating",
    "PENDING": "validating",
    "QUEUED": "validating",
    "RUNNING": "in_progress",
    "PAUSED": "in_progress",
    "UPDATING": "in_progress",
    "SUCCEEDED": "completed",
    "PARTIALLY_SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLING": "cancelling",
    "CANCELLED": "cancelled",
    "EXPIRED": "expired",
}
"""BATCH_STATE_* (Gemini API) and JOB_STATE_* (the SDKs' words) by their last part."""

GRPC_NAMES = {
    1: "CANCELLED",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
"""The HTTP status each gRPC status comes with in real time (google.rpc.Code)."""


class GeminiBatchAPI(LineBatchAPI):
    """Gemini requests through the Gemini API's batch mode (half price)."""

    provider = "google"
    limits = BatchLimits(max_requests=50_000, max_bytes=20_000_000)
    """Inlined requests must stay under 20 MB in all (Google's batch guide); Google
    documents no count for them, so the count is the contract's default."""

    def __init__(self, api: GoogleAPI) -> None:
        self.api = api
        self._lines: dict[str, str] = {}
        self._order: dict[str, list[str]] = {}
        prefix = api._prefix
        self._root = prefix[: -len("models/")] if prefix.endswith("models/") else prefix

    def line(self, item: BatchItem) -> bytes:
        """The item's inlined request, encoded."""
        request = item.request
        body = build_body(
            request.input,
            request.tools,
            request.tool_choice,
            request.config,
            self.api.safety_settings,
        )
        return orjson.dumps({"request": body, "metadata": {"key": item.custom_id}})

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        headers = job_headers(self.provider, items)
        lines = self.take_lines(items)
        model = self.api.model_name
        display = f"gauge-{tag or items[0].custom_id}"
        head = orjson.dumps({"displayName": display, "model": f"models/{model}"})
        body = (
            b'{"batch":'
            + head[:-1]
            + b',"inputConfig":{"requests":{"requests":['
            + b",".join(lines)
            + b"]}}}}"
        )
        path = f"{self.api._prefix}{model}:batchGenerateContent"
        operation = await post_bytes(self.api._client, path, body, "application/json", headers)
        name = operation.get("name") if isinstance(operation, dict) else None
        if not isinstance(name, str):
            raise GoogleResponseError("INTERNAL", f"unexpected answer: {str(operation)[:200]}")
        self._order[name] = [item.custom_id for item in items]
        return name

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        if not tag:
            return None
        params = {"pageSize": str(_batch_wire.LIST_PAGE)}
        while True:
            listed, _ = await self.api._client.get_json(f"{self._root}batches?{urlencode(params)}")
            listed = listed if isinstance(listed, dict) else {}
            operations = [o for o in listed.get("operations") or () if isinstance(o, dict)]
            old = 0
            for operation in operations:
                meta = operation.get("metadata") or {}
                if meta.get("displayName") == f"gauge-{tag}" and operation.get("name"):
                    return str(operation["name"])
                old += too_old(meta.get("createTime"), since)
            token = listed.get("nextPageToken")
            if not token or not operations or old == len(operations):
                return None
            params["pageToken"] = str(token)

    async def status(self, job_id: str) -> BatchStatus:
        return job_status(await self._get(job_id))

    async def results(self, job_id: str) -> BatchResults:
        operation = await self._get(job_id)
        order = self._order.get(job_id) or _input_keys(operation)
        results = parse_results(operation, order, self.api.model_name)
        if operation.get("done"):
            self._order.pop(job_id, None)  # read once a job is over: nothing more to place
        return results

    async def cancel(self, job_id: str) -> None:
        await self.api._client.post_json(f"{self._root}{job_id}:cancel", {})

    async def _get(self, job_id: str) -> dict[str, Any]:
        operation, _ = await self.api._client.get_json(f"{self._root}{job_id}")
        if not isinstance(operation, dict):
            raise GoogleResponseError("INTERNAL", f"unexpected batch: {str(operation)[:200]}")
        return operation


def job_status(operation: dict[str, Any]) -> BatchStatus:
    """A batch Operation -> BatchStatus in OpenAI's words."""
    meta = operation.get("metadata") or {}
    raw = str(meta.get("state") or "BATCH_STATE_UNSPECIFIED")
    suffix = raw.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_")
    state = STATES.get(suffix)
    error = operation.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if state is None:
        state, message = "failed", f"unknown batch state {raw!r}"
    stats = meta.get("batchStats") or {}
    return BatchStatus(
        state,
        total=int(stats.get("requestCount") or 0),
        completed=int(stats.get("successfulRequestCount") or 0),
        failed=int(stats.get("failedRequestCount") or 0),
        message=message,
    )


def parse_results(operation: dict[str, Any], order: list[str], model: str) -> BatchResults:
    """A finished batch Operation's inlined responses -> outputs and errors by custom_id."""
    results = BatchResults()
    responses = _responses(operation)
    # Placing by order is only safe when every request has its response.
    by_order = len(responses) == len(order)
    for index, entry in enumerate(responses):
        meta = entry.get("metadata")
        key = meta.get("key") if isinstance(meta, dict) else None
        if not isinstance(key, str):
            key = order[index] if by_order else None
        if not key:
            continue  # unplaceable: left unanswered, so it is sent again
        if isinstance(entry.get("error"), dict):
            results.errors[key] = item_error(entry["error"])
        elif isinstance(entry.get("response"), dict):
            results.outputs[key] = parse_response(entry["response"], model)
    return results


def item_error(status: dict[str, Any]) -> ItemError:
    """An inlined error (google.rpc.Status: code, message, status) -> ItemError."""
    name = status.get("status")
    if not isinstance(name, str):
        code = status.get("code")
        name = GRPC_NAMES.get(code, "UNKNOWN") if isinstance(code, int) else "UNKNOWN"
    message = str(status.get("message") or name)
    decision = classify(GoogleResponseError(name, message))
    return ItemError(f"{name}: {message}", HTTP_STATUS.get(name), decision.retryable)


def _responses(operation: dict[str, Any]) -> list[dict[str, Any]]:
    for holder in ((operation.get("metadata") or {}).get("output"), operation.get("response")):
        if isinstance(holder, dict):
            inlined = (holder.get("inlinedResponses") or {}).get("inlinedResponses")
            if isinstance(inlined, list):
                return [e for e in inlined if isinstance(e, dict)]
    return []


def _input_keys(operation: dict[str, Any]) -> list[str]:
    """The custom_ids in the order the batch was created with, from its inputConfig."""
    config = (operation.get("metadata") or {}).get("inputConfig") or {}
    requests = (config.get("requests") or {}).get("requests") or []
    return [str((r.get("metadata") or {}).get("key", "")) for r in requests if isinstance(r, dict)]


def vertex_refused() -> str:
    """The one-line error for `batch` on a Vertex AI model."""
    return (
        "google batch works with the Gemini API (GOOGLE_API_KEY or GEMINI_API_KEY), not "
        "Vertex AI, whose batch prediction reads and writes Cloud Storage or BigQuery; use a "
        "Gemini API key for batch, or remove batch (--batch) for this model"
    )
