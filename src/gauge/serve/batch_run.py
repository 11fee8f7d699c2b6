"""Running one batch: check its input file, answer each line, write the output files.

Checking reads the whole input (in a thread, so the server keeps answering)
and fails the batch when a line is not a request OpenAI's batch API would
take: not a JSON object, no `custom_id` or a repeated one, a method other
than POST, a `url` other than the batch's endpoint, no `body`. Every such
line is an `errors.data` entry naming it (at most MAX_ERRORS).

Answering streams the input again and gives each line's body to the same
`complete` the real-time route uses (parse, model check, engine, response),
at most `concurrency` at once, so real-time requests are still served. A
line's answer goes to the output file:

    {"id": "batch_req_...", "custom_id": ..., "response": {"status_code": 200,
     "request_id": ..., "body": {...}}, "error": null}

and a refused one (another model, a bad field) to the error file, with its
status and OpenAI's error body as `response`. Lines not run before the batch
expires go to the error file with `error: {"code": "batch_expired", ...}`; a
cancelled batch keeps what was answered. Files with no line are not made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from gauge.errors import one_line
from gauge.serve.files import OUTPUT_PURPOSE, new_id
from gauge.serve.schemas import APIError

if TYPE_CHECKING:
    from gauge.serve.batches import BatchStore

log = logging.getLogger("gauge.serve")

MAX_REQUESTS = 50_000
"""Requests in one batch, as OpenAI's limit."""
MAX_ERRORS = 100
"""`errors.data` entries kept for a file that does not validate."""
_LINE_FIELDS = frozenset({"custom_id", "method", "url", "body"})
_EXPIRED = {
    "code": "batch_expired",
    "message": "this request was not run before the batch's completion window ended",
}


def usage_object(prompt: int, completion: int) -> dict[str, Any]:
    """A batch's `usage`: tokens read and written by its answered requests."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


async def run_batch(store: BatchStore, batch: dict[str, Any]) -> None:
    """Take `batch` from validating to a final state (see the module doc)."""
    try:
        await _run(store, batch)
    except asyncio.CancelledError:
        raise  # the server is stopping: the store saves the batch as it is
    except Exception as ex:
        log.exception("batch %s failed", batch["id"])
        _fail(store, batch, [_error("server_error", f"internal error: {one_line(ex)}")])


async def _run(store: BatchStore, batch: dict[str, Any]) -> None:
    source = store.files.path(batch["input_file_id"])
    endpoint = batch["endpoint"]

    def stopped() -> bool:
        return bool(batch["status"] == "cancelling")

    total, errors = await asyncio.to_thread(check_input, source, endpoint, stopped)
    if stopped():
        _finish(store, batch, "cancelled", None, None)
        return
    if errors:
        _fail(store, batch, errors)
        return
    batch["request_counts"]["total"] = total
    batch["status"] = "in_progress"
    batch["in_progress_at"] = store.now()
    store.save(batch)
    outputs = _Outputs(store, batch)
    try:
        ending = await _answer_all(store, batch, source, outputs)
    finally:
        outputs.close()
    if ending == "completed":
        batch["status"] = "finalizing"
        batch["finalizing_at"] = store.now()
        store.save(batch)
    output_id, error_id = outputs.register()
    _finish(store, batch, ending, output_id, error_id)


def check_input(
    path: Path, endpoint: str, stopped: Callable[[], bool] = lambda: False
) -> tuple[int, list[dict[str, Any]]]:
    """(requests, errors) of the input file at `path` for a batch on `endpoint`."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    count = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue  # a blank line (a trailing newline) is no request
            count += 1
            problem = _line_problem(raw, endpoint, seen)
            if problem is not None:
                errors.append(problem | {"line": number})
            if len(errors) >= MAX_ERRORS or stopped():
                break
    if not errors and count == 0:
        errors.append(_error("empty_file", "the input file holds no requests: one per line"))
    if not errors and count > MAX_REQUESTS:
        errors.append(
            _error(
                "too_many_tasks",
                f"the input file holds {count} requests; a batch takes at most "
                f"{MAX_REQUESTS}: split it into several batches",
            )
        )
    return count, errors


def _line_problem(raw: bytes, endpoint: str, seen: set[str]) -> dict[str, Any] | None:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as ex:
        return _error("invalid_json_line", f"this line is not valid JSON ({ex})")
    if not isinstance(line, dict):
        return _error(
            "invalid_json_line",
            f"this line is a JSON {type(line).__name__}, not an object with custom_id, "
            "method, url and body",
        )
    for name in ("custom_id", "method", "url", "body"):
        if name not in line:
            return _error("missing_required_parameter", f"this line has no {name}", param=name)
    extra = sorted(set(line) - _LINE_FIELDS)
    if extra:
        return _error(
            "invalid_request",
            f"unknown field {extra[0]!r}: a line holds custom_id, method, url and body",
            param=extra[0],
        )
    custom_id = line["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        return _error("invalid_request", "custom_id must be a non-empty string", param="custom_id")
    if custom_id in seen:
        return _error(
            "duplicate_custom_id",
            f"custom_id {custom_id!r} is on an earlier line too: each must be unique",
            param="custom_id",
        )
    seen.add(custom_id)
    if line["method"] != "POST":
        return _error(
            "invalid_request", f"method {line['method']!r} is not valid: use POST", param="method"
        )
    if line["url"] != endpoint:
        return _error(
            "url_mismatch",
            f"url {line['url']!r} is not the batch's endpoint {endpoint!r}: every line "
            "of a batch goes to its endpoint",
            param="url",
        )
    if not isinstance(line["body"], dict):
        return _error("invalid_request", "body must be a JSON object", param="body")
    return None


def _error(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": None}


async def _answer_all(
    store: BatchStore, batch: dict[str, Any], source: Path, outputs: _Outputs
) -> str:
    """Answer every line, `store.concurrency` at once; how the run ended."""
    slots = asyncio.Semaphore(store.concurrency)
    ending = "completed"
    async with asyncio.TaskGroup() as group:
        with source.open("rb") as lines:
            for raw in lines:
                if not raw.strip():
                    continue
                line = orjson.loads(raw)  # checked before: each is an object
                if ending == "completed":
                    await slots.acquire()
                    ending = _ending(store, batch)
                    if ending == "completed":
                        group.create_task(_answer(store, batch, line, outputs, slots))
                        continue
                    slots.release()
                if ending == "cancelled":
                    break
                outputs.error(line["custom_id"], None, _EXPIRED)  # expired: the rest
    return ending


def _ending(store: BatchStore, batch: dict[str, Any]) -> str:
    if batch["status"] == "cancelling":
        return "cancelled"
    if store.clock() >= batch["expires_at"]:
        return "expired"
    return "completed"


async def _answer(
    store: BatchStore,
    batch: dict[str, Any],
    line: dict[str, Any],
    outputs: _Outputs,
    slots: asyncio.Semaphore,
) -> None:
    custom_id = line["custom_id"]
    try:
        body = line["body"]
        if body.get("stream") not in (None, False):
            raise APIError(
                "stream is not supported in a batch: remove it (the output file holds "
                "each whole answer)",
                param="stream",
            )
        answer = await store.complete(batch["endpoint"], body)
        if not isinstance(answer, dict):
            raise TypeError(f"a batch request was answered with {type(answer).__name__}")
        outputs.answer(custom_id, answer)
    except APIError as ex:
        outputs.error(custom_id, ex, None)
    except Exception as ex:
        log.exception("batch %s: request %r failed", batch["id"], custom_id)
        error = APIError(f"internal error: {one_line(ex)}", 500, type="server_error")
        outputs.error(custom_id, error, None)
    finally:
        slots.release()


class _Outputs:
    """The output and error files of one run, written line by line as answers arrive."""

    def __init__(self, store: BatchStore, batch: dict[str, Any]) -> None:
        self.store = store
        self.batch = batch
        self.counts = batch["request_counts"]
        self.ids = (new_id("file-"), new_id("file-"))
        self.lines = [0, 0]
        self.handles: list[IO[bytes]] = [store.files.path(i).open("wb") for i in self.ids]

    def answer(self, custom_id: str, body: dict[str, Any]) -> None:
        """One answered request: a line in the output file."""
        usage = body.get("usage")
        if isinstance(usage, dict):
            total = self.batch["usage"]
            self.batch["usage"] = usage_object(
                total["input_tokens"] + usage.get("prompt_tokens", 0),
                total["output_tokens"] + usage.get("completion_tokens", 0),
            )
        self._write(0, custom_id, 200, body, None)
        self.counts["completed"] += 1

    def error(self, custom_id: str, ex: APIError | None, error: dict[str, str] | None) -> None:
        """One refused request (`ex`) or one not run (`error`): a line in the error file."""
        if ex is None:
            self._write(1, custom_id, None, None, error)
        else:
            self._write(1, custom_id, ex.status, ex.body(), None)
        self.counts["failed"] += 1

    def _write(
        self,
        which: int,
        custom_id: str,
        status: int | None,
        body: dict[str, Any] | None,
        error: dict[str, str] | None,
    ) -> None:
        response = None
        if status is not None:
            response = {"status_code": status, "request_id": new_id("req_"), "body": body}
        record = {
            "id": new_id("batch_req_"),
            "custom_id": custom_id,
            "response": response,
            "error": error,
        }
        self.handles[which].write(orjson.dumps(record) + b"\n")
        self.lines[which] += 1

    def close(self) -> None:
        """Close both files (before they are registered or dropped)."""
        for handle in self.handles:
            handle.close()

    def register(self) -> tuple[str | None, str | None]:
        """The ids of the output and error files; a file with no line is removed."""
        names = ("output", "error")
        found: list[str | None] = []
        for file_id, lines, name in zip(self.ids, self.lines, names, strict=True):
            if lines:
                filename = f"{self.batch['id']}_{name}.jsonl"
                self.store.files.add(file_id, filename, OUTPUT_PURPOSE)
                found.append(file_id)
            else:
                self.store.files.path(file_id).unlink(missing_ok=True)
                found.append(None)
        return found[0], found[1]


def _fail(store: BatchStore, batch: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    batch["status"] = "failed"
    batch["failed_at"] = store.now()
    batch["errors"] = {"object": "list", "data": errors}
    store.save(batch)


def _finish(
    store: BatchStore,
    batch: dict[str, Any],
    ending: str,
    output_id: str | None,
    error_id: str | None,
) -> None:
    batch["output_file_id"] = output_id
    batch["error_file_id"] = error_id
    batch["status"] = ending
    batch[f"{ending}_at"] = store.now()
    store.save(batch)
