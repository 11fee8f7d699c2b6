"""Test helpers shipped with gauge: fake wire-format servers for offline tests and benchmarks.

    OpenAIServer    a mock OpenAI-compatible server (see gauge.testing.openai_server)
    OpenAIBatchServer  a fake OpenAI files + batches server (gauge.testing.openai_batch_server)

Names are imported on first use, so `python -m gauge.testing.openai_server` runs
the module once, as a script.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "OpenAIBatchServer": "gauge.testing.openai_batch_server",
    "OpenAIServer": "gauge.testing.openai_server",
    "RecordedRequest": "gauge.testing.openai_server",
    "validate_request": "gauge.testing.openai_schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gauge.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from gauge.testing.openai_batch_server import OpenAIBatchServer as OpenAIBatchServer
    from gauge.testing.openai_schema import validate_request as validate_request
    from gauge.testing.openai_server import OpenAIServer as OpenAIServer
    from gauge.testing.openai_server import RecordedRequest as RecordedRequest
