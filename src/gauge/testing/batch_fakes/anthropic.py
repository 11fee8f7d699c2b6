"""A fake Anthropic Message Batches API (the knobs are in _base.py).

    POST /v1/messages/batches              {"requests": [{"custom_id", "params"}]}
    GET  /v1/messages/batches/{id}         the Message Batch object
    GET  /v1/messages/batches/{id}/results JSONL, once ended
    POST /v1/messages/batches/{id}/cancel
    GET  /v1/messages/batches              {"data", "has_more", "first_id", "last_id"},
                                           newest first, paged by `limit` (default 20,
                                           1 to 1000) and `after_id`

Anthropic has no failed batch: `end="failed"` is refused. Requests a job
leaves unanswered are `expired` (an expired job) or `canceled` lines.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gauge.testing.batch_fakes._base import BatchFake, Job, echo, http_error, jsonl, last_user_text

_ERRORS = {
    "rate_limit": ("rate_limit_error", "Number of request tokens has exceeded your rate limit"),
    "bad_request": ("invalid_request_error", "max_tokens: Field required"),
}


class FakeAnthropicBatches(BatchFake):
    """Message Batches on 127.0.0.1; `api_key` is what requests must carry."""

    name = "anthropic"

    def __init__(self, api_key: str = "sk-ant-test", **knobs: Any) -> None:
        super().__init__(**knobs)
        if self.end == "failed":
            raise ValueError("anthropic batches never end failed; use expired or cancelled")
        self.api_key = api_key

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages/batches", self.create)
        router.add_get("/v1/messages/batches/{id}", self.retrieve)
        router.add_get("/v1/messages/batches/{id}/results", self.results)
        router.add_post("/v1/messages/batches/{id}/cancel", self.cancel)
        router.add_get("/v1/messages/batches", self.list_jobs)

    def not_found(self, job_id: str) -> web.HTTPException:
        return _error(404, "not_found_error", f"batch {job_id} not found")

    async def create(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        entries = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise _error(400, "invalid_request_error", "requests: Field required")
        ids = [e.get("custom_id") for e in entries]
        if len(set(ids)) != len(ids):
            raise _error(400, "invalid_request_error", "custom_id values must be unique")
        for entry in entries:
            params = entry.get("params") or {}
            if not {"model", "max_tokens", "messages"} <= params.keys():
                raise _error(400, "invalid_request_error", "params: model, max_tokens, messages")
        texts = [last_user_text(e["params"]["messages"]) for e in entries]
        job = self.new_job(ids, texts, entries[0]["params"]["model"], prefix="msgbatch_")
        return web.json_response(self._batch(job, "running"))

    async def list_jobs(self, request: web.Request) -> web.Response:
        self._auth(request)
        jobs = self.newest_first()
        if (after := request.query.get("after_id")) is not None:
            ids = [job.id for job in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        if not 1 <= limit <= 1000:
            raise _error(400, "invalid_request_error", "limit: from 1 to 1000")
        page = [self._batch(job, self.shown(job)) for job in jobs[:limit]]
        return web.json_response(
            {
                "data": page,
                "has_more": len(jobs) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def retrieve(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        return web.json_response(self._batch(job, self.poll(job)))

    async def results(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        end = self.final(job)
        if end is None:
            raise _error(400, "invalid_request_error", f"batch {job.id} is still processing")
        lines = [
            {"custom_id": cid, "result": self._result(job, i, end)}
            for i, cid in enumerate(job.custom_ids)
        ]
        return web.Response(body=jsonl(lines), content_type="application/binary")

    async def cancel(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        job.cancel_asked = True
        return web.json_response(self._batch(job, "cancelling"))

    def _batch(self, job: Job, state: str) -> dict[str, Any]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if state in ("running", "cancelling"):
            counts["processing"] = len(job.custom_ids)
        else:
            for i in range(len(job.custom_ids)):
                counts[self._result(job, i, state)["type"]] += 1
        ended = state not in ("running", "cancelling")
        return {
            "id": job.id,
            "type": "message_batch",
            "processing_status": {"running": "in_progress", "cancelling": "canceling"}.get(
                state, "ended"
            ),
            "request_counts": counts,
            "created_at": job.created_iso,
            "expires_at": "2026-12-07T08:00:00Z",
            "ended_at": "2026-12-06T09:00:00Z" if ended else None,
            "cancel_initiated_at": "2026-12-06T08:30:00Z" if job.cancel_asked else None,
            "results_url": f"{self.url}/v1/messages/batches/{job.id}/results" if ended else None,
        }

    def _result(self, job: Job, index: int, end: str) -> dict[str, Any]:
        outcome = self.outcome(job, index)
        if outcome is None:
            return {"type": "canceled" if end == "cancelled" else "expired"}
        if outcome == "ok":
            return {"type": "succeeded", "message": _message(job, index)}
        error_type, message = _ERRORS[outcome]
        return {
            "type": "errored",
            "error": {"type": "error", "error": {"type": error_type, "message": message}},
        }

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("x-api-key") != self.api_key:
            raise _error(401, "authentication_error", "invalid x-api-key")


def _message(job: Job, index: int) -> dict[str, Any]:
    text = echo(job.texts[index])
    words = len(text.split())
    return {
        "id": f"msg_{job.id}_{index}",
        "type": "message",
        "role": "assistant",
        "model": job.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": len(job.texts[index].split()), "output_tokens": words},
    }


def _error(status: int, error_type: str, message: str) -> web.HTTPException:
    return http_error(status, {"type": "error", "error": {"type": error_type, "message": message}})
