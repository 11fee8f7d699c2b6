"""Anthropic Message Batches: a job is one POST holding every request.

    POST /v1/messages/batches           {"requests": [{"custom_id", "params"}]}
    GET  /v1/messages/batches/{id}      processing_status in_progress | canceling | ended,
                                        request_counts, results_url (once ended)
    GET  results_url                    JSONL: {"custom_id", "result": {"type": succeeded |
                                        errored | canceled | expired, ...}}
    POST /v1/messages/batches/{id}/cancel
    GET  /v1/messages/batches?limit=100&after_id=...  {"data", "has_more", "last_id"},
                                        newest first (find_job)

A Message Batch carries nothing of ours but its requests (no metadata, no
name), and the list shows only counts. So `find_job` matches the one batch not
already known whose request count is the job's and whose `created_at` lies
within FIND_SLACK of the intent. When several match (several creates cut off by
one crash), the ended ones are told apart by their results (which name every
request); if none of those is it, it finds none, and the requests are sent
again rather than waited for in the wrong batch.

`params` is the Messages body `request.py` builds; a succeeded result's
`message` goes through `response.py`, and an errored result's error type
through `errors.py` (rate_limit_error, overloaded_error, api_error: retryable).
Canceled and expired requests are left unanswered: the batch stage sends them
again. An ended job maps to cancelled when a cancel was asked for, to expired
when requests expired (the 24-hour window), else to completed.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from gauge.model.batch.api import (
    FIND_SLACK,
    BatchItem,
    BatchLimits,
    BatchResults,
    BatchState,
    BatchStatus,
    ItemError,
)
from gauge.model.providers import _batch_wire
from gauge.model.providers._batch_wire import (
    LineBatchAPI,
    job_headers,
    read_jsonl,
    too_old,
    unix_time,
)
from gauge.model.providers._files import get_bytes, post_bytes
from gauge.model.providers.anthropic.errors import AnthropicResponseError, classify
from gauge.model.providers.anthropic.request import build_body
from gauge.model.providers.anthropic.response import parse_message

if TYPE_CHECKING:
    from gauge.model.providers.anthropic import AnthropicAPI

BATCHES_PATH = "v1/messages/batches"

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic's error types and the HTTP status each comes with in real time."""


class AnthropicBatchAPI(LineBatchAPI):
    """Claude requests through the Message Batches API (half price)."""

    provider = "anthropic"
    limits = BatchLimits(max_requests=100_000, max_bytes=256_000_000)
    """Anthropic's documented limits: 100,000 requests or 256 MB per batch."""

    def __init__(self, api: AnthropicAPI) -> None:
        self.api = api
        self._lines: dict[str, str] = {}

    def line(self, item: BatchItem) -> bytes:
        """The item's `{"custom_id", "params"}` entry, encoded."""
        request = item.request
        params = build_body(
            self.api.model_name,
            request.input,
            request.tools,
            request.tool_choice,
            request.config,
            self.api.max_tokens() or 4096,
        )
        return orjson.dumps({"custom_id": item.custom_id, "params": params})

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        # Message Batches take no metadata: `tag` has nowhere to go (see find_job).
        headers = job_headers(self.provider, items)
        lines = self.take_lines(items)
        body = b'{"requests":[' + b",".join(lines) + b"]}"
        answer = await post_bytes(self.api._client, BATCHES_PATH, body, "application/json", headers)
        return str(_field(answer, "id"))

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        found = await self._candidates(since, len(custom_ids), known)
        if len(found) == 1:
            return str(found[0]["id"])
        # Several: an ended batch's results name its requests; one still running cannot tell.
        wanted = set(custom_ids)
        for batch in found:
            url = batch.get("results_url")
            if batch.get("processing_status") == "ended" and url:
                raw = await get_bytes(self.api._client, str(url))
                named = {e.get("custom_id") for e in read_jsonl(raw, "anthropic batch results")}
                if named == wanted:
                    return str(batch["id"])
        return None

    async def _candidates(self, since: float, count: int, known: Set[str]) -> list[Any]:
        """Batches not in `known` holding `count` requests, created within FIND_SLACK of `since`."""
        found: list[Any] = []
        params = {"limit": str(_batch_wire.LIST_PAGE)}
        while True:
            listed, _ = await self.api._client.get_json(f"{BATCHES_PATH}?{urlencode(params)}")
            listed = listed if isinstance(listed, dict) else {}
            batches = [b for b in listed.get("data") or () if isinstance(b, dict)]
            for batch in batches:
                created = unix_time(batch.get("created_at"))
                if created is None or abs(created - since) > FIND_SLACK:
                    continue
                if batch.get("id") not in known and job_status(batch).total == count:
                    found.append(batch)
            last = batches[-1] if batches else {}
            if not listed.get("has_more") or not last or too_old(last.get("created_at"), since):
                return found
            params["after_id"] = str(last.get("id"))

    async def status(self, job_id: str) -> BatchStatus:
        return job_status(await self._get(job_id))

    async def results(self, job_id: str) -> BatchResults:
        batch = await self._get(job_id)
        url = batch.get("results_url")
        if not url:
            return BatchResults()
        raw = await get_bytes(self.api._client, str(url))
        return parse_results(raw, self.api.model_name)

    async def cancel(self, job_id: str) -> None:
        await self.api._client.post_json(f"{BATCHES_PATH}/{job_id}/cancel", {})

    async def _get(self, job_id: str) -> dict[str, Any]:
        batch, _ = await self.api._client.get_json(f"{BATCHES_PATH}/{job_id}")
        if not isinstance(batch, dict):
            raise AnthropicResponseError("api_error", f"unexpected batch: {str(batch)[:200]}")
        return batch


def job_status(batch: dict[str, Any]) -> BatchStatus:
    """A Message Batch object -> BatchStatus in OpenAI's words."""
    counts = batch.get("request_counts") or {}
    count = {k: int(counts.get(k) or 0) for k in _COUNTS}
    processing = batch.get("processing_status")
    state: BatchState
    message = None
    if processing == "in_progress":
        state = "in_progress"
    elif processing == "canceling":
        state = "cancelling"
    elif processing == "ended":
        if batch.get("cancel_initiated_at"):
            state = "cancelled"
        elif count["expired"]:
            state = "expired"
            message = f"{count['expired']} requests expired before they ran (24-hour window)"
        else:
            state = "completed"
    else:
        state, message = "failed", f"unknown processing_status {processing!r}"
    return BatchStatus(
        state,
        total=sum(count.values()),
        completed=count["succeeded"],
        failed=count["errored"],
        message=message,
    )


_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def parse_results(raw: bytes, model: str) -> BatchResults:
    """A results JSONL file -> outputs and errors by custom_id."""
    results = BatchResults()
    for entry in read_jsonl(raw, "anthropic batch results"):
        custom_id = entry.get("custom_id")
        result = entry.get("result") or {}
        kind = result.get("type")
        if not isinstance(custom_id, str):
            continue
        if kind == "succeeded":
            results.outputs[custom_id] = parse_message(result.get("message"), model)
        elif kind == "errored":
            results.errors[custom_id] = item_error(result.get("error"))
    return results


def item_error(error: Any) -> ItemError:
    """An errored result's `error` ({"type": "error", "error": {type, message}}) -> ItemError."""
    inner = error.get("error", error) if isinstance(error, dict) else {}
    if not isinstance(inner, dict):
        inner = {}
    error_type = str(inner.get("type") or "api_error")
    message = str(inner.get("message") or error_type)
    decision = classify(AnthropicResponseError(error_type, message))
    return ItemError(f"{error_type}: {message}", ERROR_STATUS.get(error_type), decision.retryable)


def _field(answer: Any, name: str) -> Any:
    if not isinstance(answer, dict) or name not in answer:
        raise AnthropicResponseError("api_error", f"unexpected answer: {str(answer)[:200]}")
    return answer[name]
