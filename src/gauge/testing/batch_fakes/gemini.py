"""A fake Gemini API batch mode, inlined requests (the knobs are in _base.py).

    POST /v1beta/models/{model}:batchGenerateContent   -> Operation batches/{id}
    GET  /v1beta/batches/{id}                          the Operation
    POST /v1beta/batches/{id}:cancel                   {}
    GET  /v1beta/batches                               {"operations", "nextPageToken"},
                                                       newest first, paged by `pageSize`
                                                       (default 50) and `pageToken`

The Operation's metadata is the batch: `state` (BATCH_STATE_PENDING on the
first read, then RUNNING, then the end), `batchStats` (int64 as strings, as
Google sends them), `inputConfig`, and once done `output.inlinedResponses`,
one per answered request, in request order. `keys=False` leaves
`metadata.key` out of the responses (users report that Google does), so the
translator must place them by order. A failed job ends with an Operation
`error` and no output.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gauge.testing.batch_fakes._base import BatchFake, Job, echo, http_error

_ERRORS = {
    "rate_limit": (8, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "bad_request": (3, "INVALID_ARGUMENT", "Request contains an invalid argument."),
}
_STATES = {
    "running": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}


class FakeGeminiBatches(BatchFake):
    """Gemini batch mode on 127.0.0.1; `api_key` is what requests must carry."""

    name = "google"

    def __init__(self, api_key: str = "g-test", keys: bool = True, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.api_key = api_key
        self.keys = keys

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1beta/models/{model:[^/:]+}:batchGenerateContent", self.create)
        router.add_get("/v1beta/batches/{id:[^/:]+}", self.retrieve)
        router.add_post("/v1beta/batches/{id:[^/:]+}:cancel", self.cancel)
        router.add_get("/v1beta/batches", self.list_jobs)

    def not_found(self, job_id: str) -> web.HTTPException:
        return _error(404, 5, "NOT_FOUND", f"batches/{job_id} not found")

    async def create(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict) or not batch.get("displayName"):
            raise _error(400, 3, "INVALID_ARGUMENT", "batch.display_name is required")
        inlined = ((batch.get("inputConfig") or {}).get("requests") or {}).get("requests")
        if not isinstance(inlined, list) or not inlined:
            raise _error(400, 3, "INVALID_ARGUMENT", "batch.input_config is required")
        for entry in inlined:
            if not (entry.get("request") or {}).get("contents"):
                raise _error(400, 3, "INVALID_ARGUMENT", "request.contents is required")
        ids = [str((e.get("metadata") or {}).get("key", "")) for e in inlined]
        texts = [_last_text(e["request"]["contents"]) for e in inlined]
        model = request.match_info["model"]
        job = self.new_job(ids, texts, model)
        job.extra["inputConfig"] = batch["inputConfig"]
        job.extra["displayName"] = batch["displayName"]
        return web.json_response(self._operation(job, "pending"))

    async def list_jobs(self, request: web.Request) -> web.Response:
        self._auth(request)
        jobs = self.newest_first()
        start = int(request.query.get("pageToken") or 0)
        size = int(request.query.get("pageSize", "50"))
        page = jobs[start : start + size]
        answer: dict[str, Any] = {"operations": [self._listed(job) for job in page]}
        if start + size < len(jobs):
            answer["nextPageToken"] = str(start + size)
        return web.json_response(answer)

    def _listed(self, job: Job) -> dict[str, Any]:
        state = self.shown(job)
        return self._operation(job, "pending" if state == "running" and not job.polls else state)

    async def retrieve(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.job_or_404(request)
        state = self.poll(job)
        if state == "running" and job.polls == 1:
            state = "pending"
        return web.json_response(self._operation(job, state))

    async def cancel(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.job_or_404(request).cancel_asked = True
        return web.json_response({})

    def _operation(self, job: Job, state: str) -> dict[str, Any]:
        done = state in ("completed", "failed", "expired", "cancelled")
        outcomes = [self.outcome(job, i) if done else None for i in range(len(job.custom_ids))]
        ok = sum(1 for o in outcomes if o == "ok")
        failed = sum(1 for o in outcomes if o in _ERRORS)
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{job.model}",
            "displayName": job.extra["displayName"],
            "inputConfig": job.extra["inputConfig"],
            "createTime": job.created_iso,
            "updateTime": "2026-12-06T08:05:00Z",
            "batchStats": {
                "requestCount": str(len(job.custom_ids)),
                "successfulRequestCount": str(ok),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(len(job.custom_ids) - ok - failed),
            },
            "state": "BATCH_STATE_PENDING" if state == "pending" else _STATES[state],
            "name": f"batches/{job.id}",
        }
        operation: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": meta, "done": done}
        if state == "failed":
            operation["error"] = {"code": 13, "message": "the batch could not be processed"}
        elif done:
            answers = [self._answer(job, i, o) for i, o in enumerate(outcomes) if o is not None]
            meta["output"] = {"inlinedResponses": {"inlinedResponses": answers}}
        return operation

    def _answer(self, job: Job, index: int, outcome: str) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        if self.keys:
            answer["metadata"] = {"key": job.custom_ids[index]}
        if outcome == "ok":
            text = echo(job.texts[index])
            prompt, reply = len(job.texts[index].split()), len(text.split())
            answer["response"] = {
                "candidates": [
                    {
                        "content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": reply,
                    "totalTokenCount": prompt + reply,
                },
                "modelVersion": job.model,
            }
        else:
            code, status, message = _ERRORS[outcome]
            answer["error"] = {"code": code, "message": message, "status": status}
        return answer

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("x-goog-api-key") != self.api_key:
            raise _error(
                400, 3, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
            )


def _last_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if content.get("role", "user") == "user":
            return " ".join(p.get("text", "") for p in content.get("parts") or () if "text" in p)
    return ""


def _error(status: int, code: int, name: str, message: str) -> web.HTTPException:
    return http_error(status, {"error": {"code": code, "message": message, "status": name}})
