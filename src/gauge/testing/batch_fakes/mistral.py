"""A fake Mistral batch API: Files plus batch jobs (the knobs are in _base.py).

    POST /v1/files                    multipart upload, purpose=batch
    GET  /v1/files/{id}/content       a file's bytes
    POST /v1/batch/jobs               {"input_files", "model", "endpoint", "metadata"}
    GET  /v1/batch/jobs/{id}          the job: QUEUED on the first read, then RUNNING,
                                      then SUCCESS | FAILED | TIMEOUT_EXCEEDED |
                                      CANCELLED (CANCELLATION_REQUESTED once, on cancel)
    POST /v1/batch/jobs/{id}/cancel
    GET  /v1/batch/jobs               {"object": "list", "data", "total"}, newest first,
                                      paged by `page` (from 0) and `page_size` (default
                                      100), filtered by `created_after` (ISO 8601)

A finished job names an `output_file` (the 2xx answers) and an `error_file`
(the failed lines: status 429 for `rate_limited`, 400 for `bad_requests`),
each only when it has lines. `files` holds every file by id.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from gauge.testing.batch_fakes._base import (
    BatchFake,
    Job,
    echo,
    form_fields,
    http_error,
    jsonl,
    last_user_text,
)

_STATUS = {
    "running": "RUNNING",
    "cancelling": "CANCELLATION_REQUESTED",
    "completed": "SUCCESS",
    "failed": "FAILED",
    "expired": "TIMEOUT_EXCEEDED",
    "cancelled": "CANCELLED",
}
_ERRORS = {
    "rate_limit": (429, "rate_limited", "Requests rate limit exceeded"),
    "bad_request": (400, "invalid_request_error", "Invalid model: mistral-nope"),
}


class FakeMistralBatches(BatchFake):
    """Mistral's batch API on 127.0.0.1 (under /v1); `api_key` is the bearer token."""

    name = "mistral"

    def __init__(self, api_key: str = "m-test", **knobs: Any) -> None:
        super().__init__(**knobs)
        self.api_key = api_key
        self.files: dict[str, bytes] = {}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/files", self.upload)
        router.add_get("/v1/files/{id}/content", self.download)
        router.add_post("/v1/batch/jobs", self.create)
        router.add_get("/v1/batch/jobs/{id}", self.retrieve)
        router.add_post("/v1/batch/jobs/{id}/cancel", self.cancel)
        router.add_get("/v1/batch/jobs", self.list_jobs)

    def not_found(self, job_id: str) -> web.HTTPException:
        return _error(404, "not_found", f"Batch job {job_id} not found")

    async def upload(self, request: web.Request) -> web.Response:
        self._auth(request)
        fields = form_fields(request.headers.get("Content-Type", ""), await request.read())
        content, filename = fields.get("file", (b"", None))
        if fields.get("purpose", (b"", None))[0] != b"batch" or filename is None:
            raise _error(422, "invalid_request_error", "purpose=batch and a file are required")
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = content
        answer: dict[str, Any] = {"id": file_id, "object": "file", "purpose": "batch"}
        answer |= {"bytes": len(content), "filename": filename}
        return web.json_response(answer)

    async def download(self, request: web.Request) -> web.Response:
        self._auth(request)
        content = self.files.get(request.match_info["id"])
        if content is None:
            raise _error(404, "not_found", f"File {request.match_info['id']} not found")
        return web.Response(body=content, content_type="application/octet-stream")

    async def create(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        if body.get("endpoint") != "/v1/chat/completions" or not body.get("model"):
            raise _error(422, "invalid_request_error", "endpoint and model are required")
        lines: list[dict[str, Any]] = []
        for file_id in body.get("input_files") or ():
            if file_id not in self.files:
                raise _error(404, "not_found", f"File {file_id} not found")
            lines += [json.loads(line) for line in self.files[file_id].splitlines() if line]
        if not lines or any(not (e.get("body") or {}).get("messages") for e in lines):
            raise _error(422, "invalid_request_error", "every line needs a body with messages")
        ids = [str(e.get("custom_id")) for e in lines]
        texts = [last_user_text(e["body"]["messages"]) for e in lines]
        job = self.new_job(ids, texts, str(body["model"]), prefix="job-")
        job.extra["metadata"] = body.get("metadata")
        job.extra["input_files"] = body["input_files"]
        return web.json_response(self._job(job, "queued"))

    async def list_jobs(self, request: web.Request) -> web.Response:
        self._auth(request)
        jobs = self.newest_first()
        if after := request.query.get("created_after"):
            try:
                since = datetime.fromisoformat(after.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise _error(422, "invalid_request_error", "created_after: a date-time") from None
            jobs = [job for job in jobs if job.created > since]
        page, size = int(request.query.get("page", "0")), int(request.query.get("page_size", "100"))
        shown = [self._job(job, self._state(job)) for job in jobs[page * size : (page + 1) * size]]
        return web.json_response({"object": "list", "data": shown, "total": len(jobs)})

    def _state(self, job: Job) -> str:
        state = self.shown(job)
        return "queued" if state == "running" and job.polls == 0 else state

    async def retrieve(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        state = self.poll(job)
        first = state == "running" and job.polls == 1
        return web.json_response(self._job(job, "queued" if first else state))

    async def cancel(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        job.cancel_asked = True
        return web.json_response(self._job(job, "cancelling"))

    def _job(self, job: Job, state: str) -> dict[str, Any]:
        done = state in ("completed", "failed", "expired", "cancelled")
        outcomes = [self.outcome(job, i) if done else None for i in range(len(job.custom_ids))]
        answer: dict[str, Any] = {
            "id": job.id,
            "object": "batch",
            "input_files": job.extra["input_files"],
            "metadata": job.extra["metadata"],
            "endpoint": "/v1/chat/completions",
            "model": job.model,
            "output_file": None,
            "error_file": None,
            "errors": [],
            "status": "QUEUED" if state == "queued" else _STATUS[state],
            "created_at": int(job.created),
            "total_requests": len(job.custom_ids),
            "completed_requests": sum(1 for o in outcomes if o is not None),
            "succeeded_requests": sum(1 for o in outcomes if o == "ok"),
            "failed_requests": sum(1 for o in outcomes if o not in (None, "ok")),
        }
        if state == "failed":
            answer["errors"] = [{"message": "the input file could not be processed", "count": 1}]
        elif done:
            answer["output_file"], answer["error_file"] = self._files(job, outcomes)
        return answer

    def _files(self, job: Job, outcomes: list[Any]) -> tuple[str | None, str | None]:
        """Write the job's output and error files once; their ids (None: no lines)."""
        if "files" not in job.extra:
            good: list[dict[str, Any]] = []
            bad: list[dict[str, Any]] = []
            for i, outcome in enumerate(outcomes):
                if outcome is not None:
                    (good if outcome == "ok" else bad).append(self._line(job, i, outcome))
            ids: list[str | None] = []
            for lines, kind in ((good, "output"), (bad, "error")):
                file_id = f"file-{job.id}-{kind}" if lines else None
                if file_id is not None:
                    self.files[file_id] = jsonl(lines)
                ids.append(file_id)
            job.extra["files"] = tuple(ids)
        output, error = job.extra["files"]
        return output, error

    def _line(self, job: Job, index: int, outcome: str) -> dict[str, Any]:
        if outcome == "ok":
            text = echo(job.texts[index])
            prompt, reply = len(job.texts[index].split()), len(text.split())
            status, body = (
                200,
                {
                    "id": f"cmpl-{job.id}-{index}",
                    "object": "chat.completion",
                    "model": job.model,
                    "created": 1796544000,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "tool_calls": None},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": reply,
                        "total_tokens": prompt + reply,
                    },
                },
            )
        else:
            code, kind, message = _ERRORS[outcome]
            status = code
            body = {"object": "error", "message": message, "type": kind, "param": None}
        return {
            "id": f"batch-{job.id}-{index}",
            "custom_id": job.custom_ids[index],
            "response": {"status_code": status, "body": body},
            "error": None,
        }

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise _error(401, "unauthorized", "Unauthorized")


def _error(status: int, kind: str, message: str) -> web.HTTPException:
    return http_error(status, {"object": "error", "message": message, "type": kind})
