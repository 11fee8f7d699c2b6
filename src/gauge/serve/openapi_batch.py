"""The files and batch routes in the server's OpenAPI document (see gauge.serve.openapi).

OpenAI's published subset that gauge ships holds no Files or Batch schemas, so
these are written here from OpenAI's API reference and the openai SDK's types
(`FileObject`, `Batch`, `FileDeleted`, the cursor pages), describing what
`gauge.serve.batch_api` accepts and answers.
"""

from __future__ import annotations

from typing import Any

from gauge.serve.batch_run import MAX_REQUESTS
from gauge.serve.batches import BATCHES_PAGE_MAX, COMPLETION_WINDOW, ENDPOINTS
from gauge.serve.files import FILES_PAGE_MAX, UPLOAD_PURPOSES
from gauge.serve.openapi_parts import json_ref as _json
from gauge.serve.openapi_parts import ref as _ref

_MEANINGS = {
    "400": "A field or query parameter with a bad value, or one this server does not take.",
    "401": "Missing or wrong bearer key (when the server has one).",
    "404": "No file or batch with that id (or the `after` cursor names none).",
    "409": "The batch cannot be cancelled in its state, or the file is a running batch's input.",
    "413": "The upload is over the server's size limit (--batch-max-file-mb).",
}


def _op(op_id: str, summary: str, ok: str, errors: str, **more: Any) -> dict[str, Any]:
    responses = {"200": _json(ok, summary)}
    responses |= {s: _json("ErrorResponse", _MEANINGS[s]) for s in errors.split()}
    return {"operationId": op_id, "summary": summary, **more, "responses": responses}


def _links(name: str, *op_ids: str) -> dict[str, Any]:
    """OpenAPI links: the new object's id is the `name` path parameter of `op_ids`."""
    return {op: {"operationId": op, "parameters": {name: "$response.body#/id"}} for op in op_ids}


def _path_id(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _limit(most: int) -> dict[str, Any]:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": most})


def batch_paths() -> dict[str, Any]:
    """The `paths` entries of the files and batch routes."""
    upload = {
        "required": True,
        "content": {"multipart/form-data": {"schema": _ref("UploadFileRequest")}},
    }
    create = {
        "required": True,
        "content": {"application/json": {"schema": _ref("CreateBatchRequest")}},
    }
    content = {
        "200": {
            "description": "The file's bytes (JSONL).",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    } | {s: _json("ErrorResponse", _MEANINGS[s]) for s in ("401", "404")}
    paths = {
        "/v1/files": {
            "post": _op(
                "createFile",
                "Upload a JSONL file of batch requests.",
                "OpenAIFile",
                "400 401 413",
                requestBody=upload,
            ),
            "get": _op(
                "listFiles",
                "The files, newest first unless order=asc.",
                "ListFilesResponse",
                "400 401 404",
                parameters=[
                    _query("purpose", {"type": "string"}),
                    _query("order", {"type": "string", "enum": ["asc", "desc"]}),
                    _limit(FILES_PAGE_MAX),
                    _query("after", {"type": "string"}),
                ],
            ),
        },
        "/v1/files/{file_id}": {
            "get": _op(
                "retrieveFile",
                "One file object.",
                "OpenAIFile",
                "401 404",
                parameters=_path_id("file_id"),
            ),
            "delete": _op(
                "deleteFile",
                "Delete a file.",
                "DeleteFileResponse",
                "401 404 409",
                parameters=_path_id("file_id"),
            ),
        },
        "/v1/files/{file_id}/content": {
            "get": {
                "operationId": "downloadFile",
                "summary": "A file's bytes.",
                "parameters": _path_id("file_id"),
                "responses": content,
            }
        },
        "/v1/batches": {
            "post": _op(
                "createBatch",
                "Run a file of requests in the background.",
                "Batch",
                "400 401 404",
                requestBody=create,
            ),
            "get": _op(
                "listBatches",
                "The batches, newest first.",
                "ListBatchesResponse",
                "400 401 404",
                parameters=[_limit(BATCHES_PAGE_MAX), _query("after", {"type": "string"})],
            ),
        },
        "/v1/batches/{batch_id}": {
            "get": _op(
                "retrieveBatch",
                "One batch object.",
                "Batch",
                "401 404",
                parameters=_path_id("batch_id"),
            )
        },
        "/v1/batches/{batch_id}/cancel": {
            "post": _op(
                "cancelBatch",
                "Cancel a batch: it keeps the answers it has.",
                "Batch",
                "401 404 409",
                parameters=_path_id("batch_id"),
            )
        },
    }
    created_file = paths["/v1/files"]["post"]["responses"]["200"]
    created_file["links"] = _links("file_id", "retrieveFile", "downloadFile", "deleteFile")
    created_batch = paths["/v1/batches"]["post"]["responses"]["200"]
    created_batch["links"] = _links("batch_id", "retrieveBatch", "cancelBatch")
    return paths


_TIME = {"type": "integer"}
_OPTIONAL_TIME = {"type": ["integer", "null"]}
_METADATA = {
    "type": ["object", "null"],
    "maxProperties": 16,
    "propertyNames": {"maxLength": 64},
    "additionalProperties": {"type": "string", "maxLength": 512},
}
_BATCH_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "param": {"type": ["string", "null"]},
        "line": {"type": ["integer", "null"]},
    },
    "required": ["code", "message"],
}
_STATUSES = [
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


def _list_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": _ref(item)},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
        "required": ["object", "data", "has_more"],
    }


def batch_schemas() -> dict[str, Any]:
    """The `components.schemas` the files and batch routes refer to."""
    file_object = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "file"},
            "bytes": {"type": "integer", "minimum": 0},
            "created_at": _TIME,
            "filename": {"type": "string"},
            "purpose": {"type": "string", "enum": [*UPLOAD_PURPOSES, "batch_output"]},
            "status": {"type": "string", "enum": ["uploaded", "processed", "error"]},
            "expires_at": _OPTIONAL_TIME,
            "status_details": {"type": ["string", "null"]},
        },
        "required": ["id", "object", "bytes", "created_at", "filename", "purpose", "status"],
    }
    counts = {
        "type": "object",
        "properties": {
            k: {"type": "integer", "minimum": 0} for k in ("total", "completed", "failed")
        },
        "required": ["total", "completed", "failed"],
    }
    times = (
        "in_progress_at",
        "expires_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    )
    batch = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "batch"},
            "endpoint": {"type": "string"},
            "model": {"type": "string"},
            "errors": {
                "type": ["object", "null"],
                "properties": {
                    "object": {"const": "list"},
                    "data": {"type": "array", "items": _BATCH_ERROR},
                },
            },
            "input_file_id": {"type": "string"},
            "completion_window": {"type": "string"},
            "status": {"type": "string", "enum": _STATUSES},
            "output_file_id": {"type": ["string", "null"]},
            "error_file_id": {"type": ["string", "null"]},
            "created_at": _TIME,
            **{name: _OPTIONAL_TIME for name in times},
            "request_counts": counts,
            "metadata": _METADATA,
        },
        "required": [
            "id",
            "object",
            "endpoint",
            "input_file_id",
            "completion_window",
            "status",
            "created_at",
        ],
    }
    return {
        "UploadFileRequest": {
            "type": "object",
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "JSONL: one request per line, {custom_id, method, url, body}.",
                },
                "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
            },
            "required": ["file", "purpose"],
            "additionalProperties": False,
        },
        "CreateBatchRequest": {
            "type": "object",
            "properties": {
                "input_file_id": {"type": "string", "minLength": 1},
                "endpoint": {"type": "string", "enum": list(ENDPOINTS)},
                "completion_window": {"type": "string", "enum": [COMPLETION_WINDOW]},
                "metadata": _METADATA,
            },
            "required": ["input_file_id", "endpoint", "completion_window"],
            "additionalProperties": False,
            "description": f"At most {MAX_REQUESTS} requests in the input file.",
        },
        "OpenAIFile": file_object,
        "Batch": batch,
        "ListFilesResponse": _list_of("OpenAIFile"),
        "ListBatchesResponse": _list_of("Batch"),
        "DeleteFileResponse": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "file"},
                "deleted": {"type": "boolean"},
            },
            "required": ["id", "object", "deleted"],
        },
    }
