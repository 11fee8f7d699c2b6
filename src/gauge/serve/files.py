"""Files for the batch API: uploaded inputs and batch outputs, kept in a directory.

    <dir>/files/<id>        the bytes
    <dir>/files/<id>.json   its `file` object, in OpenAI's shape:
                            {id, object: "file", bytes, created_at, filename, purpose, status}

An upload streams from the request to disk in chunks, so a large input file is
never held whole in memory; its size is checked against the limit as it is
copied. The index (id -> object) is small and kept in memory; it is read back
from the `.json` files at start, so a server given the same directory finds
its files again. Only purpose "batch" may be uploaded: the server stores files
for its batch API and nothing else; outputs it writes have "batch_output".
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from gauge.serve.schemas import APIError

UPLOAD_PURPOSES = ("batch",)
OUTPUT_PURPOSE = "batch_output"
CHUNK = 1 << 20
FORM_SLACK = 64 * 1024
"""Bytes a multipart body may hold beyond its file: boundaries, headers, the purpose field."""
FILES_PAGE_MAX = 10_000


class FileStore:
    """The files under `root/files`, by id (see the module doc)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.dir = root / "files"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.objects: dict[str, dict[str, Any]] = {}
        found = [orjson.loads(p.read_bytes()) for p in self.dir.glob("*.json")]
        for obj in sorted(found, key=lambda o: (o["created_at"], o.get("_seq", 0))):
            self.objects[obj["id"]] = obj

    def path(self, file_id: str) -> Path:
        """Where the bytes of `file_id` live (or will, for an output being written)."""
        return self.dir / file_id

    def get(self, file_id: str) -> dict[str, Any]:
        """The file object of `file_id`, or a 404 saying how to find the right id."""
        obj = self.objects.get(file_id)
        if obj is None:
            raise APIError(
                f"no file with id {file_id!r}: GET /v1/files lists the files this server has",
                404,
                param="file_id",
                code="file_not_found",
            )
        return public(obj)

    def add(self, file_id: str, filename: str, purpose: str) -> dict[str, Any]:
        """Register the bytes already at `path(file_id)` as a file; its object."""
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": self.path(file_id).stat().st_size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
            "_seq": time.time_ns(),  # orders files made in the same second
        }
        write_json(self.dir / f"{file_id}.json", obj)
        self.objects[file_id] = obj
        return public(obj)

    def delete(self, file_id: str) -> dict[str, Any]:
        """Remove `file_id` (bytes and object); OpenAI's deletion answer."""
        self.get(file_id)
        del self.objects[file_id]
        for path in (self.dir / f"{file_id}.json", self.path(file_id)):
            path.unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        """GET /v1/files: `purpose`, `order` (desc by default), `limit` and `after`."""
        unknown = set(query) - {"purpose", "order", "limit", "after"}
        if unknown:
            raise APIError(
                f"unknown query parameter {sorted(unknown)[0]!r}: "
                "GET /v1/files takes purpose, order, limit and after",
                param=sorted(unknown)[0],
            )
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise APIError(f"order={order!r} is not valid: use asc or desc", param="order")
        items = list(self.objects.values())
        if "purpose" in query:
            items = [o for o in items if o["purpose"] == query["purpose"]]
        if order == "desc":
            items.reverse()
        limit = parse_limit(query, FILES_PAGE_MAX, FILES_PAGE_MAX)
        return cursor_page([public(o) for o in items], limit, query.get("after"), "file")

    async def upload(self, request: Request) -> dict[str, Any]:
        """POST /v1/files: a multipart body with `file` and `purpose` ("batch"), to disk."""
        kind = request.headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            raise APIError(
                "POST /v1/files takes multipart/form-data with the fields file and purpose "
                f"(got content type {kind or 'none'!r})"
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes + FORM_SLACK:
            raise self._too_large(int(declared))
        try:
            form = await self._limited(request).form(max_files=1, max_fields=8)
        except HTTPException as ex:
            raise APIError(
                f"the upload is not valid multipart form data ({ex.detail}); "
                "send the fields file and purpose"
            ) from None
        except AssertionError:  # starlette's check for the form parser
            raise APIError(
                "this server cannot read uploads: install python-multipart "
                "(pip install python-multipart) and restart it",
                500,
                type="server_error",
            ) from None
        try:
            unknown = set(form) - {"file", "purpose"}
            if unknown:
                name = sorted(unknown)[0]
                raise APIError(
                    f"field {name!r} is not supported here: send only file and purpose "
                    "(files are kept until deleted or the server's batch directory is removed)",
                    param=name,
                )
            purpose = form.get("purpose")
            if not isinstance(purpose, str):
                raise APIError("the field purpose is missing: send purpose=batch", param="purpose")
            if purpose not in UPLOAD_PURPOSES:
                raise APIError(
                    f"purpose {purpose!r} is not supported: this server stores files for its "
                    "batch API only; use purpose=batch",
                    param="purpose",
                )
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise APIError(
                    "the field file is missing or is not a file: send the JSONL file as "
                    "the multipart field file",
                    param="file",
                )
            file_id = new_id("file-")
            await self._copy(upload, self.path(file_id))
            return self.add(file_id, upload.filename or "upload.jsonl", purpose)
        finally:
            await form.close()

    def _limited(self, request: Request) -> Request:
        """`request` reading at most the limit (a chunked body has no length to check first)."""
        seen = 0
        limit = self.max_bytes + FORM_SLACK

        async def receive() -> Message:
            nonlocal seen
            message = await request.receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise self._too_large(seen)
            return message

        return Request(request.scope, receive)

    async def _copy(self, upload: UploadFile, dest: Path) -> None:
        size = 0
        try:
            with dest.open("wb") as out:
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(size)
                    out.write(chunk)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _too_large(self, size: int) -> APIError:
        return APIError(
            f"the upload ({size} bytes or more) is over this server's limit of "
            f"{self.max_bytes} bytes: split the requests into several files, or raise "
            "--batch-max-file-mb (GAUGE_SERVE_BATCH_MAX_FILE_MB)",
            413,
            param="file",
        )


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object without its private bookkeeping (keys starting with _)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def new_id(prefix: str) -> str:
    """A fresh id, as OpenAI's: a prefix and random letters and digits."""
    return prefix + secrets.token_hex(12)


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` to `path` whole or not at all (a reader never sees half a file)."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(orjson.dumps(obj))
    os.replace(part, path)


def parse_limit(query: dict[str, str], default: int, most: int) -> int:
    """The `limit` query parameter: a whole number from 1 to `most`."""
    raw = query.get("limit")
    if raw is None:
        return default
    with contextlib.suppress(ValueError):
        limit = int(raw)
        if 1 <= limit <= most:
            return limit
    raise APIError(
        f"limit={raw!r} is not valid: use a whole number from 1 to {most}", param="limit"
    )


def cursor_page(
    items: list[dict[str, Any]], limit: int, after: str | None, what: str
) -> dict[str, Any]:
    """OpenAI's cursor page: the `limit` items that follow the one with id `after`."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise APIError(
                f"after={after!r} is not the id of a {what} in this list: "
                "pass the last_id of the page before",
                404,
                param="after",
            )
        start = ids.index(after) + 1
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }
