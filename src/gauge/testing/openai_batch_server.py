"""A fake OpenAI files + batches server (aiohttp.web) for tests and benchmarks.

    async with OpenAIBatchServer(polls=1) as server:
        model = get_model("openai/gpt-4o-mini", base_url=server.url, api_key="sk-test")
        await model.generate("Hi", config={"batch": True})
        assert server.submissions  # custom_id -> times it was submitted in a job

    python -m gauge.testing.openai_batch_server --port 8000 --polls 2 --delay 5 \\
        --fail "bad prompt=400" --end expired
    curl http://127.0.0.1:8000/stats

Endpoints, under /v1 and Azure's /openai (api-version is accepted and ignored):
POST files (multipart purpose + file), GET files/{id}/content, POST batches
(with `metadata`, up to 16 string pairs, kept on the job), GET batches/{id},
POST batches/{id}/cancel, GET batches (OpenAI's list: newest first, `limit`
1-100, default 20, `after` a job id; {"object": "list", "data", "first_id",
"last_id", "has_more"}); POST chat/completions (and Azure's
deployments/{d}/chat/completions) answer in real time (JSON, or SSE with
`stream`), for requests the batch stage sends that way. Each input line is
answered like the mock chat server (openai_replies.chat_reply: the last user
message echoed).

A job is validated as OpenAI does (input file exists, `endpoint` matches every
line's `url`, unique custom ids, completion_window 24h: else it ends failed);
it answers `completed` after `polls` polls and `delay` seconds (kill -9 tests
use a delay to kill the client while its jobs are in flight). Controls
(methods, or flags):
- `fail(text, status, times=1, file="error")`: the next `times` lines whose last
  user message is `text` get `status` (429, 400, ...) in the error (or output) file;
- `end_next(state, answered=0)`: the next job ends `failed`, `expired` or
  `cancelled` instead, with only its first `answered` lines answered (the rest
  carry `batch_expired` / `batch_cancelled` errors in the error file);
- `fail_http(kind, status)`: the next request of `kind` (files, batches, poll,
  content) is answered `status` with an error body.

GET /stats answers {"submissions": {custom_id: n}, "jobs", "files", "polls",
"realtime", "duplicates"} (`duplicates`: ids submitted more than once), so a
crash test can check that every request was paid for once.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gauge.testing.openai_replies import chat_chunks, chat_reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Job:
    """A batch job as the server keeps it."""

    id: str
    input_file_id: str
    endpoint: str
    lines: list[dict[str, Any]]
    polls_left: int
    end: str = "completed"
    answered: int | None = None
    status: str = "validating"
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: dict[str, str] | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))
    ready_at: float = 0.0
    """Monotonic time before which the job stays in progress."""


@dataclass(slots=True)
class ItemFault:
    """Lines whose last user message is `text` get `status`, `times` more times."""

    status: int
    times: int
    file: str


class OpenAIBatchServer:
    """The fake server; start with `async with` (or `start()` / `stop()`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        polls: int = 0,
        reply: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.polls = polls
        """Polls a job answers `in_progress` before it completes."""
        self.delay = delay
        """Seconds after its creation before a job may complete (polls count as well)."""
        self.reply = reply
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.submissions: Counter[str] = Counter()
        """custom_id -> lines holding it in created jobs."""
        self.poll_count = 0
        self.realtime = 0
        """Chat completions answered in real time."""
        self.realtime_bodies: list[dict[str, Any]] = []
        self.item_faults: dict[str, ItemFault] = {}
        self.ends: deque[tuple[str, int]] = deque()
        self.http_faults: dict[str, deque[int]] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        """(method, path, query) of every request, /stats excepted."""
        self.headers: list[dict[str, str]] = []
        """The (lower-cased) headers of each request in `seen`, in order."""
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL clients use (ends with /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    # -- controls --------------------------------------------------------------------

    def fail(self, text: str, status: int, times: int = 1, file: str = "error") -> None:
        """Answer the next `times` lines asking `text` with `status` (in the error file,
        or with file="output" in the output file)."""
        self.item_faults[text] = ItemFault(status, times, file)

    def end_next(self, state: str, answered: int = 0) -> None:
        """End the next job `state` (failed, expired, cancelled), answering `answered` lines."""
        if state not in ("completed", "failed", "expired", "cancelled"):
            raise ValueError(f"end state {state!r}: use completed, failed, expired or cancelled")
        self.ends.append((state, answered))

    def fail_http(self, kind: str, status: int) -> None:
        """Answer the next request of `kind` (files, batches, poll, content) with `status`."""
        self.http_faults.setdefault(kind, deque()).append(status)

    def stats(self) -> dict[str, Any]:
        """What /stats answers."""
        return {
            "submissions": dict(self.submissions),
            "jobs": len(self.jobs),
            "files": len(self.files),
            "polls": self.poll_count,
            "realtime": self.realtime,
            "duplicates": sum(1 for n in self.submissions.values() if n > 1),
        }

    # -- serving ---------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._record])
        for prefix in ("/v1", "/openai"):
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_get(f"{prefix}/files/{{id}}/content", self._content)
            app.router.add_post(f"{prefix}/batches", self._create)
            app.router.add_get(f"{prefix}/batches/{{id}}", self._poll)
            app.router.add_get(f"{prefix}/batches", self._list)
            app.router.add_post(f"{prefix}/batches/{{id}}/cancel", self._cancel)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_get("/stats", self._stats)
        return app

    async def start(self, sock: socket.socket | None = None) -> OpenAIBatchServer:
        """Start serving (on a free port when `port` is 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            sock.setblocking(False)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OpenAIBatchServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers ----------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/stats":
            self.seen.append((request.method, request.path, dict(request.query)))
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
        return await handler(request)

    def _fault(self, kind: str) -> web.Response | None:
        queued = self.http_faults.get(kind)
        if not queued:
            return None
        status = queued.popleft()
        return _error(status, f"injected {status} on {kind}")

    async def _upload(self, request: web.Request) -> web.Response:
        if (fault := self._fault("files")) is not None:
            return fault
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or purpose not in ("batch", "batch-api"):
            return _error(400, "a batch upload needs purpose=batch (or batch-api) and a file")
        data = upload.file.read()
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        return _json({"id": file_id, "object": "file", "bytes": len(data), "purpose": purpose})

    async def _content(self, request: web.Request) -> web.Response:
        if (fault := self._fault("content")) is not None:
            return fault
        data = self.files.get(request.match_info["id"])
        if data is None:
            return _error(404, f"no file {request.match_info['id']}")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _create(self, request: web.Request) -> web.Response:
        if (fault := self._fault("batches")) is not None:
            return fault
        body = orjson.loads(await request.read())
        data = self.files.get(body.get("input_file_id", ""))
        if data is None:
            return _error(400, f"no input file {body.get('input_file_id')!r}")
        metadata = body.get("metadata")
        if metadata is not None and not _valid_metadata(metadata):
            return _error(400, "metadata: at most 16 pairs of strings (keys <= 64, values <= 512)")
        lines = [orjson.loads(raw) for raw in data.splitlines() if raw.strip()]
        job = Job(f"batch_{len(self.jobs) + 1}", body["input_file_id"], body["endpoint"], lines, 0)
        job.metadata = metadata
        job.polls_left = self.polls
        job.ready_at = time.monotonic() + self.delay
        if self.ends:
            job.end, job.answered = self.ends.popleft()
        self.jobs[job.id] = job
        for line in lines:
            self.submissions[str(line.get("custom_id"))] += 1
        problem = _invalid(job, body)
        if problem is not None:
            job.end, job.status = "failed", "failed"
            job.errors.append({"code": "invalid_request", "message": problem})
        return _json(self._object(job))

    async def _poll(self, request: web.Request) -> web.Response:
        if (fault := self._fault("poll")) is not None:
            return fault
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, f"no batch {request.match_info['id']}")
        self.poll_count += 1
        if job.status in ("validating", "in_progress"):
            if job.polls_left > 0 or time.monotonic() < job.ready_at:
                job.polls_left = max(0, job.polls_left - 1)
                job.status = "in_progress"
            else:
                self._finish(job, job.end)
        elif job.status == "cancelling":
            self._finish(job, "cancelled")
        return _json(self._object(job))

    async def _list(self, request: web.Request) -> web.Response:
        # Newest first: a later job has a higher number (ids are created in order).
        jobs = sorted(self.jobs.values(), key=lambda job: int(job.id.split("_")[1]), reverse=True)
        after = request.query.get("after")
        if after is not None:
            ids = [job.id for job in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        if not 1 <= limit <= 100:
            return _error(400, "limit must be between 1 and 100")
        page = [self._object(job) for job in jobs[:limit]]
        return _json(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(jobs) > limit,
            }
        )

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, f"no batch {request.match_info['id']}")
        if job.status in ("validating", "in_progress"):
            job.status = "cancelling"
        return _json(self._object(job))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.realtime += 1
        self.realtime_bodies.append(body)
        reply = chat_reply(body, self.reply)
        if not body.get("stream"):
            return _json(reply)
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        for chunk in chat_chunks(reply, body):
            await stream.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await stream.write(b"data: [DONE]\n\n")
        await stream.write_eof()
        return stream

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    # -- answers -----------------------------------------------------------------------

    def _finish(self, job: Job, state: str) -> None:
        """Write the job's output and error files and end it in `state`."""
        job.status = state
        if state == "failed":
            job.errors.append({"code": "failed", "message": "the job failed (injected)"})
            return
        answered = len(job.lines) if state == "completed" else (job.answered or 0)
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for index, line in enumerate(job.lines):
            if index >= answered:
                code = "batch_expired" if state == "expired" else "batch_cancelled"
                error = {"code": code, "message": f"the job ended {state} before this request"}
                errors.append(_line(line, None, error))
                continue
            target, answer = self._answer(line)
            (outputs if target == "output" else errors).append(answer)
        job.output_file_id = self._store(outputs)
        job.error_file_id = self._store(errors)

    def _answer(self, line: dict[str, Any]) -> tuple[str, bytes]:
        body = line.get("body") or {}
        messages = body.get("messages") or []
        last: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        fault = self.item_faults.get(str(last.get("content")))
        if fault is not None and fault.times > 0:
            fault.times -= 1
            error = {"error": {"message": f"injected {fault.status}", "type": "error"}}
            return fault.file, _line(line, {"status_code": fault.status, "body": error}, None)
        reply = chat_reply(body, self.reply)
        return "output", _line(line, {"status_code": 200, "body": reply}, None)

    def _store(self, lines: list[bytes]) -> str | None:
        if not lines:
            return None
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = b"\n".join(lines) + b"\n"
        return file_id

    def _object(self, job: Job) -> dict[str, Any]:
        failed = 0 if job.status != "completed" else None
        total = len(job.lines)
        done = total if job.status == "completed" else 0
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": job.endpoint,
            "input_file_id": job.input_file_id,
            "completion_window": "24h",
            "status": job.status,
            "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id,
            "created_at": job.created_at,
            "metadata": job.metadata,
            "errors": {"object": "list", "data": job.errors} if job.errors else None,
            "request_counts": {"total": total, "completed": done, "failed": failed or 0},
        }


def _valid_metadata(metadata: Any) -> bool:
    """OpenAI's limits on a batch's metadata: 16 pairs, keys <= 64 and values <= 512 chars."""
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return False
    return all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
        for k, v in metadata.items()
    )


def _invalid(job: Job, body: dict[str, Any]) -> str | None:
    """Why OpenAI would refuse this job, or None."""
    if body.get("completion_window") != "24h":
        return "completion_window must be 24h"
    seen: set[str] = set()
    for line in job.lines:
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or custom_id in seen:
            return f"duplicate or missing custom_id {custom_id!r}"
        seen.add(custom_id)
        if line.get("method") != "POST" or line.get("url") != job.endpoint:
            return f"line {custom_id}: method must be POST and url {job.endpoint}"
    return None


def _line(line: dict[str, Any], response: dict[str, Any] | None, error: Any) -> bytes:
    custom_id = line.get("custom_id")
    return orjson.dumps(
        {
            "id": f"batch_req_{custom_id}",
            "custom_id": custom_id,
            "response": response,
            "error": error,
        }
    )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"message": message, "type": "error", "code": None}}, status)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; prints `listening on <url>` once ready."""
    parser = argparse.ArgumentParser(
        prog="python -m gauge.testing.openai_batch_server",
        description="Fake OpenAI files + batches server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--polls", type=int, default=0, help="polls before a job completes")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds before a job may complete"
    )
    parser.add_argument("--reply", default=None, help="fixed reply text (default: echo)")
    parser.add_argument(
        "--fail", action="append", default=[], metavar="TEXT=STATUS", help="fail a prompt once"
    )
    parser.add_argument(
        "--end", action="append", default=[], metavar="STATE", help="end the next job so"
    )
    args = parser.parse_args(argv)
    server = OpenAIBatchServer(args.host, args.port, args.polls, args.reply, args.delay)
    for spec in args.fail:
        text, _, status = spec.rpartition("=")
        server.fail(text, int(status))
    for state in args.end:
        server.end_next(state)
    asyncio.run(_serve(server))


async def _serve(server: OpenAIBatchServer) -> None:
    import signal

    await server.start()
    print(f"listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    main()
