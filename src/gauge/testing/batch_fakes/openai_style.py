"""A fake OpenAI-style batch API as Groq and Together speak it (knobs in _base.py).

    POST {prefix}/files                 multipart upload (purpose: `purpose`)
    GET  {prefix}/files/{id}/content    a file's bytes
    POST {prefix}/batches               {"input_file_id", "endpoint", "completion_window"}
    GET  {prefix}/batches/{id}          the job
    POST {prefix}/batches/{id}/cancel
    GET  {prefix}/batches               the jobs, newest first

`FakeGroqBatches`: prefix /openai/v1, purpose batch, lines {"custom_id",
"method", "url", "body"}, OpenAI's batch object (lowercase status,
request_counts, errors.data, `metadata` as given at create, `created_at` in
Unix seconds); unanswered lines of an expired or cancelled job are
`batch_expired` / `batch_cancelled` lines in the error file, as OpenAI writes
them. The list is OpenAI's: {"object": "list", "data", "first_id", "last_id",
"has_more"}, paged by `limit` (default 20, at most 100) and `after` (a job id).

`FakeTogetherBatches`: prefix /v1, purpose batch-api, lines {"custom_id",
"body"}, Together's job object (status in capitals, `progress`, `error` as a
string, `created_at` in RFC 3339; create answers {"job": ..., "warning"}; the
job shows no metadata); unanswered lines are left out. The list is a plain JSON array of
jobs, and GET {prefix}/files/{id} answers a file's object with its `filename`.
"""

from __future__ import annotations

import json
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

_ERRORS = {
    "rate_limit": (429, "rate_limit_exceeded", "Rate limit reached for requests"),
    "bad_request": (400, "invalid_request_error", "'messages' must contain at least one item"),
}
_DONE = ("completed", "failed", "expired", "cancelled")


class OpenAIStyleBatches(BatchFake):
    """The files + batches endpoints; subclasses set the service's details."""

    prefix = "/v1"
    purpose = "batch"
    line_url: str | None = "/v1/chat/completions"
    """The `url` every line must carry (None: lines have no url)."""

    def __init__(self, api_key: str = "sk-test", **knobs: Any) -> None:
        super().__init__(**knobs)
        self.api_key = api_key
        self.files: dict[str, bytes] = {}
        self.names: dict[str, str] = {}
        """file id -> the name it was uploaded with."""

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{self.prefix}/files", self.upload)
        router.add_get(f"{self.prefix}/files/{{id}}/content", self.download)
        router.add_post(f"{self.prefix}/batches", self.create)
        router.add_get(f"{self.prefix}/batches/{{id}}", self.retrieve)
        router.add_post(f"{self.prefix}/batches/{{id}}/cancel", self.cancel)
        router.add_get(f"{self.prefix}/batches", self.list_jobs)
        router.add_get(f"{self.prefix}/files/{{id}}", self.file_object)

    def not_found(self, job_id: str) -> web.HTTPException:
        return _error(404, "not_found", f"batch {job_id} not found")

    async def upload(self, request: web.Request) -> web.Response:
        self._auth(request)
        fields = form_fields(request.headers.get("Content-Type", ""), await request.read())
        content, filename = fields.get("file", (b"", None))
        if fields.get("purpose", (b"", None))[0] != self.purpose.encode() or filename is None:
            raise _error(400, "invalid_request_error", f"purpose={self.purpose} and a file")
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = content
        self.names[file_id] = filename
        return web.json_response(self._file(file_id))

    async def file_object(self, request: web.Request) -> web.Response:
        self._auth(request)
        if request.match_info["id"] not in self.names:
            raise _error(404, "not_found", f"file {request.match_info['id']} not found")
        return web.json_response(self._file(request.match_info["id"]))

    def _file(self, file_id: str) -> dict[str, Any]:
        content = self.files[file_id]
        shown = {"id": file_id, "object": "file", "bytes": len(content)}
        return shown | {"filename": self.names.get(file_id), "purpose": self.purpose}

    async def list_jobs(self, request: web.Request) -> web.Response:
        """OpenAI's list: {"object": "list", "data", "first_id", "last_id", "has_more"}."""
        self._auth(request)
        jobs = self.newest_first()
        after = request.query.get("after")
        if after is not None:
            ids = [job.id for job in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = min(100, max(1, int(request.query.get("limit", "20"))))
        page = [self.job_object(job, self.shown(job)) for job in jobs[:limit]]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(jobs) > limit,
            }
        )

    async def download(self, request: web.Request) -> web.Response:
        self._auth(request)
        content = self.files.get(request.match_info["id"])
        if content is None:
            raise _error(404, "not_found", f"file {request.match_info['id']} not found")
        return web.Response(body=content, content_type="application/octet-stream")

    async def create(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        content = self.files.get(str(body.get("input_file_id")))
        if content is None or body.get("endpoint") != "/v1/chat/completions":
            raise _error(400, "invalid_request_error", "input_file_id and endpoint")
        lines = [json.loads(line) for line in content.splitlines() if line.strip()]
        for line in lines:
            url_ok = self.line_url is None or line.get("url") == self.line_url
            if not url_ok or not (line.get("body") or {}).get("messages"):
                raise _error(400, "invalid_request_error", f"bad line: {line}")
        ids = [str(line["custom_id"]) for line in lines]
        texts = [last_user_text(line["body"]["messages"]) for line in lines]
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and len(metadata) <= 16
            and all(
                isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items()
            )
        ):
            raise _error(400, "invalid_request_error", "metadata: up to 16 string pairs")
        job = self.new_job(ids, texts, str(lines[0]["body"].get("model", "")))
        job.extra["input_file_id"] = body["input_file_id"]
        job.extra["metadata"] = metadata
        return web.json_response(self.created(self.job_object(job, "validating")))

    async def retrieve(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        state = self.poll(job)
        first = state == "running" and job.polls == 1
        return web.json_response(self.job_object(job, "validating" if first else state))

    async def cancel(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        job.cancel_asked = True
        return web.json_response(self.job_object(job, "cancelling"))

    def created(self, job: dict[str, Any]) -> dict[str, Any]:
        """The answer to a create (the job itself here)."""
        return job

    def job_object(self, job: Job, state: str) -> dict[str, Any]:
        """The job as the service shows it."""
        done = state in _DONE
        outcomes = [self.outcome(job, i) if done else None for i in range(len(job.custom_ids))]
        output, errors = self._files(job, outcomes) if done and state != "failed" else (None, None)
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": job.extra["input_file_id"],
            "completion_window": "24h",
            "created_at": int(job.created),
            "metadata": job.extra.get("metadata"),
            "status": "in_progress" if state == "running" else state,
            "output_file_id": output,
            "error_file_id": errors,
            "errors": {"object": "list", "data": [{"code": "invalid", "message": "bad input"}]}
            if state == "failed"
            else None,
            "request_counts": {
                "total": len(job.custom_ids),
                "completed": sum(1 for o in outcomes if o == "ok"),
                "failed": sum(1 for o in outcomes if o not in (None, "ok")),
            },
        }

    def unanswered(self, job: Job, index: int) -> dict[str, Any] | None:
        """The error line of a request the job never ran (None: no line)."""
        end = self.final(job)
        code = "batch_cancelled" if end == "cancelled" else "batch_expired"
        message = "This request could not be executed before the batch ended."
        line = {"id": f"req-{job.id}-{index}", "custom_id": job.custom_ids[index]}
        return line | {"response": None, "error": {"code": code, "message": message}}

    def _files(self, job: Job, outcomes: list[Any]) -> tuple[str | None, str | None]:
        if "files" not in job.extra:
            good: list[dict[str, Any]] = []
            bad: list[dict[str, Any]] = []
            for i, outcome in enumerate(outcomes):
                if outcome == "ok":
                    good.append(self._line(job, i, outcome))
                elif outcome is not None:
                    bad.append(self._line(job, i, outcome))
                elif (line := self.unanswered(job, i)) is not None:
                    bad.append(line)
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
                    "id": f"chatcmpl-{job.id}-{index}",
                    "object": "chat.completion",
                    "created": 1796544000,
                    "model": job.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
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
            status, kind, message = _ERRORS[outcome]
            body = {"error": {"message": message, "type": kind, "code": kind}}
        return {
            "id": f"req-{job.id}-{index}",
            "custom_id": job.custom_ids[index],
            "response": {"status_code": status, "request_id": f"r{index}", "body": body},
            "error": None,
        }

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise _error(401, "invalid_api_key", "Invalid API Key")


class FakeGroqBatches(OpenAIStyleBatches):
    """Groq's batch API: OpenAI's, under /openai/v1."""

    name = "groq"
    prefix = "/openai/v1"


class FakeTogetherBatches(OpenAIStyleBatches):
    """Together's batch API: its own job object and line shape."""

    name = "together"
    purpose = "batch-api"
    line_url = None

    def created(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"job": job, "warning": None}

    async def list_jobs(self, request: web.Request) -> web.Response:
        """Together's list: a JSON array of every job, newest first."""
        self._auth(request)
        return web.json_response([self.job_object(j, self.shown(j)) for j in self.newest_first()])

    def job_object(self, job: Job, state: str) -> dict[str, Any]:
        shown = super().job_object(job, state)
        counts = shown.pop("request_counts")
        errors = shown.pop("errors")
        done = counts["completed"] + counts["failed"]
        shown.pop("metadata")
        return shown | {
            "created_at": job.created_iso,
            "status": shown["status"].upper(),
            "progress": 100 * done // counts["total"] if counts["total"] else 0,
            "model_id": job.model,
            "error": errors["data"][0]["message"] if errors else None,
        }

    def unanswered(self, job: Job, index: int) -> dict[str, Any] | None:
        return None


def _error(status: int, code: str, message: str) -> web.HTTPException:
    return http_error(status, {"error": {"message": message, "type": code, "code": code}})
