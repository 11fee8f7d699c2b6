"""OpenAIBatchAPI: OpenAI's Batch API (files + batches), and Azure OpenAI's.

    POST files (multipart: purpose=batch, file=<JSONL>)        -> {"id": file id}
    POST batches {input_file_id, endpoint, completion_window}  -> {"id", "status", ...}
    GET  batches/{id}                                          -> status, request_counts,
                                                                  output_file_id, error_file_id
    GET  files/{id}/content                                    -> JSONL
    POST batches/{id}/cancel
    GET  batches?limit=100&after={id}                          -> {"data": [...], "has_more"},
                                                                  newest first (find_job)

A job is created with `metadata: {"gauge_token": <tag>}`, so `find_job` can
find a job whose create answer a crash cut off.

One input line per request: `{"custom_id", "method": "POST", "url", "body"}`,
the body built by the chat provider itself (the same as a real-time request).
Output and error lines are `{"custom_id", "response": {"status_code", "body"},
"error"}`; a 200 body is parsed by the chat provider's parser, anything else
becomes an ItemError classified like the same HTTP error in real time.

Services differ only in data: the paths, the file purpose, the line URL (class
attributes below), and the query parameters and model name of the chat API.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Any, ClassVar
from urllib.parse import urlencode

import orjson

from gauge.model.batch.api import (
    TAG_KEY,
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
    too_old,
)
from gauge.model.providers._http import (
    HTTPConnectionError,
    HTTPStatusError,
    classify_http,
    error_message,
)
from gauge.model.providers.openai_compat.chat import OpenAIChatAPI

STATES: dict[str, BatchState] = {
    "validating": "validating",
    "in_progress": "in_progress",
    "finalizing": "finalizing",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
}
_UNANSWERED = frozenset({"batch_expired", "batch_cancelled"})
"""Error codes of lines a job never ran (expired or cancelled): re-batched, not failed."""


class OpenAIBatchAPI(LineBatchAPI):
    """Batches of chat-completions requests through OpenAI's files and batches endpoints."""

    provider = "openai"
    limits = BatchLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
    files_path: ClassVar[str] = "files"
    """Where input files are uploaded (relative to the chat API's base URL)."""
    batches_path: ClassVar[str] = "batches"
    purpose: ClassVar[str] = "batch"
    line_url: ClassVar[str] = "/v1/chat/completions"
    """The `url` of each input line, and the job's `endpoint`."""
    completion_window: ClassVar[str] = "24h"
    states: ClassVar[dict[str, BatchState]] = STATES
    """The service's job states (lower-cased) -> the contract's; an unknown one ends the
    job as failed."""

    def __init__(self, chat: OpenAIChatAPI) -> None:
        self.chat = chat
        self.provider = chat.name or type(self).provider
        self._lines: dict[str, str] = {}

    # -- translation -------------------------------------------------------------

    def line(self, item: BatchItem) -> bytes:
        """The input line for `item` (the request body the chat API would send)."""
        request = item.request
        body = self.chat.body(request.input, request.tools, request.tool_choice, request.config)
        line = {"custom_id": item.custom_id, "method": "POST", "url": self.line_url, "body": body}
        return orjson.dumps(line)

    def read_line(self, raw: bytes, results: BatchResults) -> None:
        """Put one output or error line's answer into `results`."""
        data = orjson.loads(raw)
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str):
            return
        response = data.get("response") or {}
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            try:
                results.outputs[custom_id] = self.chat.output(body)
            except HTTPConnectionError as ex:  # a malformed body: worth another try
                results.errors[custom_id] = ItemError(str(ex), 200, retryable=True)
            return
        error = data.get("error")
        if isinstance(status, int):
            decision = classify_http(HTTPStatusError(status, error_message(body), body))
            retryable = decision is not None and decision.retryable
            results.errors[custom_id] = ItemError(error_message(body), status, retryable)
        elif isinstance(error, dict):
            code = str(error.get("code") or "")
            if code in _UNANSWERED:
                return
            message = str(error.get("message") or code or "no error message")
            results.errors[custom_id] = ItemError(message, None, retryable="rate_limit" in code)

    # -- the contract --------------------------------------------------------------

    def _path(self, path: str, extra: dict[str, str] | None = None) -> str:
        params = {**(extra or {}), **(self.chat.query_params() or {})}
        return f"{path}?{urlencode(params)}" if params else path

    async def submit(self, items: list[BatchItem], tag: str = "") -> str:
        # extra_headers go with the upload and the create request: one set per job.
        headers = job_headers(self.provider, items)
        lines = self.take_lines(items)
        file_id = await self.upload(b"\n".join(lines) + b"\n", headers, file_name(tag))
        job: dict[str, Any] = {
            "input_file_id": file_id,
            "endpoint": self.line_url,
            "completion_window": self.completion_window,
        }
        if tag:
            job["metadata"] = {TAG_KEY: tag}
        body, _ = await self.chat.client.post_json(
            self.batches_path, job, headers, self.chat.query_params()
        )
        return str(body["id"])

    async def find_job(
        self, tag: str, since: float, custom_ids: Sequence[str], known: Set[str]
    ) -> str | None:
        if not tag:
            return None
        params = {"limit": str(_batch_wire.LIST_PAGE)}
        while True:
            page, _ = await self.chat.client.get_json(self._path(self.batches_path, params))
            jobs = page.get("data") if isinstance(page, dict) else None
            if not isinstance(jobs, list) or not jobs:
                return None
            for job in jobs:
                if isinstance(job, dict) and (job.get("metadata") or {}).get(TAG_KEY) == tag:
                    return str(job["id"])
            last = jobs[-1] if isinstance(jobs[-1], dict) else {}
            if not page.get("has_more") or too_old(last.get("created_at"), since):
                return None
            params["after"] = str(last.get("id"))

    async def upload(
        self, data: bytes, headers: dict[str, str] | None = None, name: str = "batch.jsonl"
    ) -> str:
        """Upload a JSONL input file (named `name`); its id."""
        import aiohttp

        client = self.chat.client
        form = aiohttp.FormData()
        form.add_field("purpose", self.purpose)
        form.add_field("file", data, filename=name, content_type="application/jsonl")
        url = client.url(self._path(self.files_path))
        try:
            async with client.session().post(
                url, data=form, headers=headers, proxy=client.proxy_url(url)
            ) as response:
                raw = await response.read()
                return str(_json(response.status, raw, response.headers)["id"])
        except aiohttp.ClientError as ex:
            raise client.connection_error(ex, url) from ex

    async def status(self, job_id: str) -> BatchStatus:
        job = await self.job(job_id)
        counts = job.get("request_counts") or {}
        errors = (job.get("errors") or {}).get("data") or []
        message = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict)) or None
        raw = str(job.get("status"))
        state = self.states.get(raw.lower())
        if state is None:  # ended as failed, naming it, rather than polled forever
            state, message = "failed", f"unknown batch state {raw!r}"
        return BatchStatus(
            state,
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            message=message,
        )

    async def job(self, job_id: str) -> dict[str, Any]:
        """The batch object as the service returns it."""
        body, _ = await self.chat.client.get_json(self._path(f"{self.batches_path}/{job_id}"))
        return body if isinstance(body, dict) else {}

    async def results(self, job_id: str) -> BatchResults:
        job = await self.job(job_id)
        results = BatchResults()
        for name in ("output_file_id", "error_file_id"):
            if file_id := job.get(name):
                content = await self.download(str(file_id))
                for raw in content.splitlines():
                    if raw.strip():
                        self.read_line(raw, results)
        return results

    async def download(self, file_id: str) -> bytes:
        """The content of an output or error file."""
        import aiohttp

        client = self.chat.client
        url = client.url(self._path(f"{self.files_path}/{file_id}/content"))
        try:
            async with client.session().get(url, proxy=client.proxy_url(url)) as response:
                raw = await response.read()
                if response.status >= 300:
                    _json(response.status, raw, response.headers)
                return raw
        except aiohttp.ClientError as ex:
            raise client.connection_error(ex, url) from ex

    async def cancel(self, job_id: str) -> None:
        await self.chat.client.post_json(
            f"{self.batches_path}/{job_id}/cancel", {}, None, self.chat.query_params()
        )


class AzureOpenAIBatchAPI(OpenAIBatchAPI):
    """Azure OpenAI's batch endpoints: `openai/files`, `openai/batches` with api-version,
    the deployment as the model (it must be a Global-Batch deployment)."""

    provider = "azure openai"
    limits = BatchLimits(max_requests=100_000, max_bytes=200 * 1024 * 1024)
    files_path = "openai/files"
    batches_path = "openai/batches"
    line_url = "/chat/completions"

    def __init__(self, chat: OpenAIChatAPI) -> None:
        super().__init__(chat)
        self.provider = type(self).provider


def file_name(tag: str) -> str:
    """The input file's name: it carries the job's tag (Together finds jobs by it)."""
    return f"gauge-{tag}.jsonl" if tag else "batch.jsonl"


def _json(status: int, raw: bytes, headers: Any) -> Any:
    """A JSON body, or HTTPStatusError for a non-2xx answer."""
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        if status < 300:
            raise HTTPConnectionError(f"HTTP {status} with a body that is not JSON") from None
        body = raw.decode(errors="replace")
    if status >= 300:
        raise HTTPStatusError(status, error_message(body), body, headers)
    return body
