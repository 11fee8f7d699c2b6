"""gauge: one Python interface to every language model, built for evaluation.

The most used names are here; the whole model layer is in `gauge.model`.
Names are imported on first use, so `import gauge` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "get_model": "gauge.model.factory",
    "model_from_config": "gauge.model.factory",
    "Model": "gauge.model.model",
    "GenerateConfig": "gauge.model.config",
    "ModelOutput": "gauge.model.output",
    "ChatMessage": "gauge.model.messages",
    "ChatMessageSystem": "gauge.model.messages",
    "ChatMessageUser": "gauge.model.messages",
    "ChatMessageAssistant": "gauge.model.messages",
    "ChatMessageTool": "gauge.model.messages",
    "GaugeError": "gauge.errors",
    "Task": "gauge.evaluation.task",
    "task": "gauge.evaluation.task",
    "eval": "gauge.evaluation.runner",
    "eval_async": "gauge.evaluation.runner",
    "read_logs": "gauge.evaluation.logs",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gauge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from gauge.errors import GaugeError
    from gauge.evaluation.logs import read_logs
    from gauge.evaluation.runner import eval, eval_async
    from gauge.evaluation.task import Task, task
    from gauge.model.config import GenerateConfig
    from gauge.model.factory import get_model, model_from_config
    from gauge.model.messages import (
        ChatMessage,
        ChatMessageAssistant,
        ChatMessageSystem,
        ChatMessageTool,
        ChatMessageUser,
    )
    from gauge.model.model import Model
    from gauge.model.output import ModelOutput
