"""OpenAI's published OpenAPI document, the part gauge speaks, shipped with the package.

`gauge/assets/openai-openapi-subset.json` is a copy of the project's shared specs
file: the paths gauge speaks from OpenAI's published OpenAPI document
(github.com/openai/openai-openapi, spec version 2.3.0) and every schema they
reference, unchanged. The server publishes its response schemas
(`gauge.serve.openapi`); the mock server in `gauge.testing` validates requests
against its request schemas.

OpenAPI 3.0 marks optional-null fields with `nullable: true`, which JSON Schema
ignores; `rewrite_nullable` turns each such schema into `anyOf [schema, {type: null}]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).parents[1] / "assets" / "openai-openapi-subset.json"


def rewrite_nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` -> JSON Schema's `anyOf [schema, null]`."""
    if isinstance(node, list):
        return [rewrite_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: rewrite_nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is True:
        return {"anyOf": [node, {"type": "null"}]}
    return node
