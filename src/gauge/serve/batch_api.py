"""OpenAI's Files and Batch routes over the server's engine.

    POST   /v1/files                      upload (multipart: file, purpose=batch)
    GET    /v1/files                      list (purpose, order, limit, after)
    GET    /v1/files/{file_id}            one file object
    GET    /v1/files/{file_id}/content    its bytes
    DELETE /v1/files/{file_id}            remove it
    POST   /v1/batches                    create (input_file_id, endpoint, completion_window)
    GET    /v1/batches                    list, newest first (limit, after)
    GET    /v1/batches/{batch_id}         one batch object
    POST   /v1/batches/{batch_id}/cancel  cancel it

Auth, metrics and errors are the other routes': a bearer key when one is set,
a count per route template and status, and OpenAI's error shape. Files and
batches live in `--batch-dir` (GAUGE_SERVE_BATCH_DIR); without one, in a
temporary directory made when the server starts and removed when it stops.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gauge.errors import ConfigError
from gauge.serve import auth
from gauge.serve.batches import TERMINAL, BatchStore, Complete
from gauge.serve.files import FileStore
from gauge.serve.metrics import Metrics
from gauge.serve.schemas import APIError
from gauge.serve.settings import Settings

Handler = Callable[[Request], Awaitable[Any]]


class BatchAPI:
    """The files and batches of one server, and the routes that reach them."""

    def __init__(self, settings: Settings, metrics: Metrics, complete: Complete) -> None:
        self.settings = settings
        self.metrics = metrics
        self.complete = complete
        self.root = check_batch_dir(settings)
        self.temporary = self.root is None
        self._files: FileStore | None = None
        self._batches: BatchStore | None = None

    async def open(self) -> None:
        """Make (or find) the directory and read the files and batches already in it."""
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="gauge-batches-"))
        self._files = FileStore(self.root, self.settings.batch_max_file_mb * 1024 * 1024)
        self._batches = BatchStore(
            self.root,
            self._files,
            self.complete,
            self.settings.served_name,
            self.settings.batch_concurrency,
        )

    async def close(self) -> None:
        """Stop running batches; remove the directory when it was a temporary one."""
        if self._batches is not None:
            await self._batches.close()
        if self.temporary and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def files(self) -> FileStore:
        """The file store (open once the server has started)."""
        if self._files is None:
            raise APIError("the server is starting; retry shortly", 503, type="server_error")
        return self._files

    @property
    def batches(self) -> BatchStore:
        """The batch store (open once the server has started)."""
        if self._batches is None:
            raise APIError("the server is starting; retry shortly", 503, type="server_error")
        return self._batches

    def routes(self) -> list[Route]:
        """The Starlette routes of the files and batch API."""
        table: list[tuple[str, str, Handler]] = [
            ("/v1/files", "POST", self._upload),
            ("/v1/files", "GET", lambda r: _ready(self.files.page(dict(r.query_params)))),
            ("/v1/files/{file_id}", "GET", lambda r: _ready(self.files.get(_id(r, "file_id")))),
            ("/v1/files/{file_id}", "DELETE", self._delete),
            ("/v1/files/{file_id}/content", "GET", self._content),
            ("/v1/batches", "POST", self._create),
            ("/v1/batches", "GET", lambda r: _ready(self.batches.page(dict(r.query_params)))),
            (
                "/v1/batches/{batch_id}",
                "GET",
                lambda r: _ready(self.batches.get(_id(r, "batch_id"))),
            ),
            (
                "/v1/batches/{batch_id}/cancel",
                "POST",
                lambda r: _ready(self.batches.cancel(_id(r, "batch_id"))),
            ),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for path, method, handler in table:
            by_path.setdefault(path, {})[method] = handler
        return [
            Route(path, self._endpoint(path, methods), methods=list(methods))
            for path, methods in by_path.items()
        ]

    def _endpoint(self, path: str, methods: dict[str, Handler]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                auth.check(path, request.headers.get("authorization"), self.settings.api_key)
                answer = await methods[request.method](request)
            except APIError as ex:
                self.metrics.finished(path, ex.status)
                return Response(
                    orjson.dumps(ex.body()), ex.status, ex.headers, media_type="application/json"
                )
            self.metrics.finished(path, 200)
            if isinstance(answer, Response):
                return answer
            return Response(orjson.dumps(answer), media_type="application/json")

        return endpoint

    async def _upload(self, request: Request) -> dict[str, Any]:
        return await self.files.upload(request)

    async def _create(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise APIError("the request body is not valid JSON") from None
        return self.batches.create(body)

    async def _delete(self, request: Request) -> dict[str, Any]:
        file_id = _id(request, "file_id")
        self.files.get(file_id)
        for batch in self.batches.records.values():
            if batch["input_file_id"] == file_id and batch["status"] not in TERMINAL:
                raise APIError(
                    f"file {file_id!r} is the input of batch {batch['id']!r}, which is "
                    f"{batch['status']}: cancel the batch or wait for it to end, then delete "
                    "the file",
                    409,
                    param="file_id",
                )
        return self.files.delete(file_id)

    async def _content(self, request: Request) -> Response:
        file_id = _id(request, "file_id")
        obj = self.files.get(file_id)
        return FileResponse(
            self.files.path(file_id),
            media_type="application/octet-stream",
            filename=obj["filename"],
            content_disposition_type="attachment",
        )


def check_batch_dir(settings: Settings) -> Path | None:
    """The batch directory the settings name, made and checked writable (None: a temporary one).

    Called before the server binds, so a directory it cannot use stops start-up in one line.
    """
    if settings.batch_dir is None:
        return None
    root = Path(settings.batch_dir).expanduser()
    try:
        for part in ("files", "batches"):
            (root / part).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as ex:
        given = settings.sources.get("batch_dir", "--batch-dir")
        raise ConfigError(
            f"cannot use {root} as the batch directory (from {given}): {ex.strerror}; give "
            "a directory this user can write, or leave it unset for a temporary one"
        ) from None
    return root


async def _ready(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _id(request: Request, name: str) -> str:
    return str(request.path_params[name])
