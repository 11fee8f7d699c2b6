"""Request validation against the OpenAI OpenAPI subset shipped with gauge.

The document is `gauge/assets/openai-openapi-subset.json` (see gauge.serve.openai_spec):
a copy of the project's shared specs file, the paths gauge speaks from OpenAI's
published OpenAPI document (github.com/openai/openai-openapi, spec version 2.3.0)
and every schema they reference, unchanged. OpenAPI 3.0 marks optional-null fields
with `nullable: true`, which JSON Schema ignores, so each such schema is rewritten
to `anyOf [schema, {type: null}]` when loaded.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from gauge.errors import MissingExtra
from gauge.serve.openai_spec import SPEC_PATH, rewrite_nullable

__all__ = ["SPEC_PATH", "rewrite_nullable", "validate_request"]

_rewrite_nullable = rewrite_nullable  # its name here before it moved to gauge.serve.openai_spec

_SCHEMAS = {
    "/v1/chat/completions": "CreateChatCompletionRequest",
    "/v1/completions": "CreateCompletionRequest",
}


@functools.cache
def _validators() -> dict[str, Any]:
    try:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
    except ModuleNotFoundError as ex:
        raise MissingExtra(
            f"request validation needs {ex.name!r}: pip install 'gauge[dev]' (or jsonschema)"
        ) from None

    spec = rewrite_nullable(orjson.loads(SPEC_PATH.read_bytes()))
    resource = Resource.from_contents(spec, default_specification=_draft())
    registry: Registry = Registry().with_resource("urn:openai-spec", resource)
    return {
        path: Draft202012Validator(
            {"$ref": f"urn:openai-spec#/components/schemas/{name}"}, registry=registry
        )
        for path, name in _SCHEMAS.items()
    }


def _draft() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def validate_request(path: str, body: Any) -> str | None:
    """The first schema violation of a request body on `path`, or None when it is valid."""
    validator = _validators().get(path)
    if validator is None:
        return None
    error = next(iter(validator.iter_errors(body)), None)
    if error is None:
        return None
    from jsonschema.exceptions import best_match

    best = best_match(validator.iter_errors(body)) or error
    location = "/".join(str(p) for p in best.absolute_path) or "(body)"
    return f"{location}: {best.message[:300]}"
