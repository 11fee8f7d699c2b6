"""Building blocks of the server's OpenAPI document (gauge.serve.openapi): references,
JSON responses, the error responses and what each status means, small schemas."""

from __future__ import annotations

from typing import Any

ERROR_MEANINGS = {
    "400": "Invalid JSON, or a field with a bad value or one this server does not take.",
    "401": "Missing or wrong bearer key (when the server has one).",
    "404": "Unknown model (code model_not_found) or route.",
    "405": "The route exists but not for this method.",
    "429": "At the server's concurrency limit; retry after Retry-After seconds.",
    "503": "The engine is still loading (Retry-After) or failed to start.",
}


def errors(*statuses: str) -> dict[str, Any]:
    """Error responses, each the ErrorResponse schema with what that status means here."""
    return {s: json_ref("ErrorResponse", ERROR_MEANINGS[s]) for s in statuses}


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_ref(name: str, description: str) -> dict[str, Any]:
    """A JSON response (or body) of a component schema."""
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def int_schema(low: int | None = None, high: int | None = None) -> dict[str, Any]:
    """An integer, within the bounds given."""
    schema: dict[str, Any] = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema
