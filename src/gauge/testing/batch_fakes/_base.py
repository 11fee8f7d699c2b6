"""What every fake batch endpoint shares: the server, the jobs, and the knobs.

A fake keeps its jobs in memory and moves each one on as it is polled: the
first `polls` status reads answer "running", the next answers the job's end.
Which requests get an answer, and which an error line, is decided here, the
same way for every provider; each provider module only speaks its wire format.

Knobs (constructor arguments, also plain attributes a test may change):

    polls         status reads that answer "running" before a job ends (default 1)
    end           how jobs end: completed | failed | expired | cancelled
    answered      expired / cancelled jobs: how many of the first requests got an
                  answer before the end (default: half, rounded down)
    rate_limited  custom_ids whose line is a rate-limit error (retryable)
    bad_requests  custom_ids whose line is a bad-request error (not retryable)

A job that is asked to cancel answers "cancelling" once, then ends cancelled.
Each fake also lists its jobs, newest first, in its provider's list shape and
paging (a list read moves no job on), so `BatchAPI.find_job` can be tested.
`submissions` counts how often each custom_id was submitted (a resumed run
must not submit a request again); `seen` records (method, path, headers) of
every HTTP request and `bodies` their raw bodies.
"""

from __future__ import annotations

import abc
import email.parser
import email.policy
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

End = Literal["completed", "failed", "expired", "cancelled"]
Outcome = Literal["ok", "rate_limit", "bad_request"]


@dataclass
class Job:
    """One job the fake holds."""

    id: str
    custom_ids: list[str]
    texts: list[str]
    """The last user text of each request (the answer echoes it)."""
    model: str = ""
    polls: int = 0
    cancel_asked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    """Provider-specific things to keep (file ids, request metadata)."""
    created: float = field(default_factory=time.time)
    """Unix time the job was created."""

    @property
    def created_iso(self) -> str:
        """`created` as RFC 3339 (UTC, with a Z)."""
        return datetime.fromtimestamp(self.created, UTC).isoformat().replace("+00:00", "Z")


class BatchFake(abc.ABC):
    """A fake batch endpoint on a free 127.0.0.1 port (use as `async with`)."""

    name = "batch"

    def __init__(
        self,
        polls: int = 1,
        end: End = "completed",
        answered: int | None = None,
        rate_limited: set[str] | None = None,
        bad_requests: set[str] | None = None,
    ) -> None:
        self.polls = polls
        self.end: End = end
        self.answered = answered
        self.rate_limited = set(rate_limited or ())
        self.bad_requests = set(bad_requests or ())
        self.jobs: dict[str, Job] = {}
        self.submissions: Counter[str] = Counter()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    async def start(self) -> BatchFake:
        """Listen on a free port; `url` is set."""
        app = web.Application(middlewares=[self._record], client_max_size=1024**3)
        self.routes(app.router)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BatchFake:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @abc.abstractmethod
    def routes(self, router: web.UrlDispatcher) -> None:
        """Add the provider's routes."""

    def new_job(
        self, custom_ids: list[str], texts: list[str], model: str = "", prefix: str = "batch_"
    ) -> Job:
        """Record a submitted job and count its custom_ids."""
        job = Job(f"{prefix}{next(self._ids):04d}", custom_ids, texts, model)
        self.jobs[job.id] = job
        self.submissions.update(custom_ids)
        return job

    def poll(self, job: Job) -> str:
        """Move `job` on by one status read: running, cancelling, or its end."""
        job.polls += 1
        if job.cancel_asked:
            if job.extra.get("cancel_seen"):
                return "cancelled"
            job.extra["cancel_seen"] = True
            return "cancelling"
        return self.end if job.polls > self.polls else "running"

    def shown(self, job: Job) -> str:
        """The job's state as last read, without moving it on (for list answers)."""
        end = self.final(job)
        if end is not None:
            return end
        return "cancelling" if job.cancel_asked else "running"

    def newest_first(self) -> list[Job]:
        """The jobs, the most recently created first."""
        return sorted(self.jobs.values(), key=lambda job: (job.created, job.id), reverse=True)

    def final(self, job: Job) -> str | None:
        """The job's end once a status read has shown it, else None (not read here)."""
        if job.cancel_asked:
            return "cancelled" if job.extra.get("cancel_seen") else None
        return self.end if job.polls > self.polls else None

    def outcome(self, job: Job, index: int) -> Outcome | None:
        """What request `index` of a finished job got (None: no answer)."""
        end = self.final(job)
        if end is None or end == "failed":
            return None
        if end in ("expired", "cancelled"):
            answered = len(job.custom_ids) // 2 if self.answered is None else self.answered
            if index >= answered:
                return None
        custom_id = job.custom_ids[index]
        if custom_id in self.rate_limited:
            return "rate_limit"
        if custom_id in self.bad_requests:
            return "bad_request"
        return "ok"

    def job_or_404(self, request: web.Request, key: str = "id") -> Job:
        """The job named in the path, or a 404 in the provider's shape."""
        job = self.jobs.get(request.match_info[key])
        if job is None:
            raise self.not_found(request.match_info[key])
        return job

    def not_found(self, job_id: str) -> web.HTTPException:
        """The provider's 404 for an unknown job (subclasses give their body)."""
        return web.HTTPNotFound(text=f"no job {job_id}")

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.seen.append(
            (request.method, request.path, {k.lower(): v for k, v in request.headers.items()})
        )
        self.bodies.append(await request.read())  # read() caches: the handler reads it again
        response: web.StreamResponse = await handler(request)
        return response


def echo(text: str) -> str:
    """The answer the fakes give a request whose last user text is `text`."""
    return f"echo: {text}"


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """Objects as JSON Lines."""
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def http_error(status: int, body: Any) -> web.HTTPException:
    """An error answer with a JSON body, to raise from a handler."""
    error = web.HTTPException(text=json.dumps(body), content_type="application/json")
    error.set_status(status)
    return error


def form_fields(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """A multipart/form-data body -> {name: (bytes, filename)}, by the standard library
    (a parser other than the one gauge builds bodies with)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[bytes, str | None]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (payload, part.get_filename())
    return fields


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message of a chat-style `messages` list."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or () if p.get("type") == "text")
    return ""
