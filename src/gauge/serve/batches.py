"""Batches: OpenAI's `batch` objects, their creation, listing, cancel and storage.

    validating -> in_progress -> finalizing -> completed
        |  \\-> failed        (the input file does not validate: `errors.data` names the lines)
        \\---+-> cancelling -> cancelled   (POST .../cancel: the output so far)
             \\-> expired     (past `expires_at`: the output so far, the rest as errors)

A batch is one JSON file, `<dir>/batches/<id>.json`, rewritten at each change of
state; the running ones live in memory too. Running is `gauge.serve.batch_run`'s:
the store only starts one task per batch. A server given the same directory
again finds its batches; one that was still running when the server stopped
is marked `failed` (its requests were not all answered; create it again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from gauge.serve.batch_run import run_batch, usage_object
from gauge.serve.files import FileStore, cursor_page, new_id, parse_limit, public, write_json
from gauge.serve.schemas import APIError

log = logging.getLogger("gauge.serve")

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
"""The routes a batch may run; /v1/embeddings is refused: no engine here embeds."""
COMPLETION_WINDOW = "24h"
WINDOW_SECONDS = 24 * 3600
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress"})
BATCHES_PAGE = 20
BATCHES_PAGE_MAX = 100
_CREATE_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata"})

Complete = Callable[[str, Any], Awaitable[Any]]
"""Answer one request body on a route, as the real-time route would (`Server.complete`)."""


class BatchStore:
    """Every batch of this server, by id, and the tasks running them."""

    def __init__(
        self,
        root: Path,
        files: FileStore,
        complete: Complete,
        model: str,
        concurrency: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = root / "batches"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files = files
        self.complete = complete
        self.model = model
        self.concurrency = concurrency
        self.clock = clock
        """Seconds since the epoch: timestamps and expiry read it (tests move it on)."""
        self.records: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        found = [orjson.loads(p.read_bytes()) for p in self.dir.glob("*.json")]
        for batch in sorted(found, key=lambda b: (b["created_at"], b.get("_seq", 0))):
            if batch["status"] not in TERMINAL:
                self._interrupted(batch)
            self.records[batch["id"]] = batch

    def now(self) -> int:
        """The clock in whole seconds, as OpenAI's timestamps."""
        return int(self.clock())

    def create(self, body: Any) -> dict[str, Any]:
        """POST /v1/batches: check the body, record the batch and start running it."""
        if not isinstance(body, dict):
            raise APIError(
                "the body must be a JSON object with input_file_id, endpoint and completion_window"
            )
        for name in body:
            if name not in _CREATE_FIELDS:
                raise APIError(
                    f"field {name!r} is not supported by this server's batch API; send "
                    "input_file_id, endpoint, completion_window and optionally metadata",
                    param=name,
                )
        file_id = _required_text(body, "input_file_id")
        endpoint = _required_text(body, "endpoint")
        if endpoint not in ENDPOINTS:
            raise APIError(
                f"endpoint {endpoint!r} is not one this server runs in a batch: use "
                f"{' or '.join(ENDPOINTS)}",
                param="endpoint",
            )
        window = _required_text(body, "completion_window")
        if window != COMPLETION_WINDOW:
            raise APIError(
                f"completion_window {window!r} is not supported: use {COMPLETION_WINDOW!r}",
                param="completion_window",
            )
        metadata = _metadata(body.get("metadata"))
        try:
            source = self.files.get(file_id)
        except APIError as ex:
            ex.param = "input_file_id"
            raise
        if source["purpose"] != "batch":
            raise APIError(
                f"file {file_id!r} has purpose {source['purpose']!r}: a batch reads a file "
                "uploaded with purpose batch",
                param="input_file_id",
            )
        now = self.now()
        batch: dict[str, Any] = {
            "id": new_id("batch_"),
            "object": "batch",
            "endpoint": endpoint,
            "model": self.model,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + WINDOW_SECONDS,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": usage_object(0, 0),
            "metadata": metadata,
            "_seq": time.time_ns(),  # orders batches made in the same second
        }
        self.records[batch["id"]] = batch
        self.save(batch)
        self._start(batch)
        return public(batch)

    def _start(self, batch: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(run_batch(self, batch))
        self.tasks[batch["id"]] = task
        task.add_done_callback(lambda _: self.tasks.pop(batch["id"], None))

    def get(self, batch_id: str) -> dict[str, Any]:
        """GET /v1/batches/{id}: the batch object, or a 404 saying how to find the id."""
        return public(self._record(batch_id))

    def _record(self, batch_id: str) -> dict[str, Any]:
        batch = self.records.get(batch_id)
        if batch is None:
            raise APIError(
                f"no batch with id {batch_id!r}: GET /v1/batches lists the batches this server has",
                404,
                param="batch_id",
                code="batch_not_found",
            )
        return batch

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        """GET /v1/batches: newest first, `limit` (1-100, default 20) after the id `after`."""
        unknown = set(query) - {"limit", "after"}
        if unknown:
            name = sorted(unknown)[0]
            raise APIError(
                f"unknown query parameter {name!r}: GET /v1/batches takes limit and after",
                param=name,
            )
        limit = parse_limit(query, BATCHES_PAGE, BATCHES_PAGE_MAX)
        items = [public(b) for b in reversed(self.records.values())]
        return cursor_page(items, limit, query.get("after"), "batch")

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """POST /v1/batches/{id}/cancel: stop taking requests; the run finishes the rest."""
        batch = self._record(batch_id)
        if batch["status"] in ("cancelling", "cancelled"):
            return public(batch)
        if batch["status"] not in CANCELLABLE:
            raise APIError(
                f"batch {batch_id!r} is {batch['status']}: only a validating or in_progress "
                "batch can be cancelled",
                409,
                param="batch_id",
            )
        batch["status"] = "cancelling"
        batch["cancelling_at"] = self.now()
        self.save(batch)
        return public(batch)

    def save(self, batch: dict[str, Any]) -> None:
        """Write `batch` to its file (whole or not at all)."""
        write_json(self.dir / f"{batch['id']}.json", batch)

    async def close(self) -> None:
        """Stop every running batch (server shutdown); each is saved as it was."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for batch in self.records.values():
            if batch["status"] not in TERMINAL:
                self.save(batch)

    def _interrupted(self, batch: dict[str, Any]) -> None:
        was = batch["status"]
        batch["status"] = "failed"
        batch["failed_at"] = self.now()
        batch["errors"] = {
            "object": "list",
            "data": [
                {
                    "code": "server_stopped",
                    "message": f"the server stopped while this batch was {was}; "
                    "create the batch again",
                    "param": None,
                    "line": None,
                }
            ],
        }
        self.save(batch)


def _required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise APIError(f"{name} is required and must be a non-empty string", param=name)
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    """OpenAI's metadata: up to 16 string keys (64 chars) and string values (512 chars)."""
    if value is None:
        return None
    ok = (
        isinstance(value, dict)
        and len(value) <= 16
        and all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in value.items()
        )
    )
    if not ok:
        raise APIError(
            "metadata must be an object of at most 16 entries, string keys of at most 64 "
            "characters and string values of at most 512",
            param="metadata",
        )
    return dict(value)
