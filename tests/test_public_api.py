"""The public API is pinned: growing or shrinking it is a deliberate diff to this file."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gauge
import gauge.model

GAUGE_ALL = [
    "__version__",
    "ChatMessage",
    "ChatMessageAssistant",
    "ChatMessageSystem",
    "ChatMessageTool",
    "ChatMessageUser",
    "GaugeError",
    "GenerateConfig",
    "Model",
    "ModelOutput",
    "Task",
    "eval",
    "eval_async",
    "get_model",
    "model_from_config",
    "read_logs",
    "task",
]

MODEL_ALL = [
    "ChatCompletionChoice",
    "ChatMessage",
    "ChatMessageAssistant",
    "ChatMessageBase",
    "ChatMessageSystem",
    "ChatMessageTool",
    "ChatMessageUser",
    "Content",
    "ContentAudio",
    "ContentImage",
    "ContentReasoning",
    "ContentText",
    "ContentVideo",
    "GenerateConfig",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "Logprob",
    "Logprobs",
    "Model",
    "ModelAPI",
    "ModelCall",
    "ModelOutput",
    "ModelUsage",
    "ResponseSchema",
    "RetryDecision",
    "RetryPolicy",
    "Secret",
    "StopReason",
    "SyncModel",
    "ToolCall",
    "ToolCallError",
    "ToolChoice",
    "ToolFunction",
    "ToolInfo",
    "ToolParams",
    "TopLogprob",
    "get_model",
    "model_from_config",
    "model_usage",
    "modelapi",
    "provider_names",
]


def test_gauge_all_is_pinned() -> None:
    assert gauge.__all__ == GAUGE_ALL


def test_gauge_model_all_is_pinned() -> None:
    assert gauge.model.__all__ == MODEL_ALL


@pytest.mark.parametrize("name", GAUGE_ALL)
def test_every_gauge_name_resolves(name: str) -> None:
    assert getattr(gauge, name) is not None


@pytest.mark.parametrize("name", MODEL_ALL)
def test_every_gauge_model_name_resolves(name: str) -> None:
    assert getattr(gauge.model, name) is not None


def test_shared_names_are_the_same_objects() -> None:
    for name in set(GAUGE_ALL) & set(MODEL_ALL):
        assert getattr(gauge, name) is getattr(gauge.model, name), name


def test_issue_imports_work() -> None:
    from gauge import ChatMessageUser, GenerateConfig, get_model
    from gauge.model import Model, ModelAPI, ModelOutput, modelapi

    assert ChatMessageUser(content="x").role == "user"
    assert GenerateConfig(temperature=1).temperature == 1
    assert isinstance(get_model("mock/x"), Model)
    assert issubclass(get_model("mock/x").api.__class__, ModelAPI)
    assert ModelOutput().completion == "" and callable(modelapi)


def test_dir_and_unknown_names() -> None:
    assert dir(gauge) == sorted(GAUGE_ALL)
    assert dir(gauge.model) == sorted(MODEL_ALL)
    with pytest.raises(AttributeError, match="module 'gauge' has no attribute 'nope'"):
        gauge.nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match=r"module 'gauge\.model' has no attribute 'nope'"):
        gauge.model.nope  # type: ignore[attr-defined]  # noqa: B018


def test_import_gauge_is_lazy() -> None:
    code = (
        "import sys, gauge;"
        "heavy = [m for m in ('pydantic', 'aiohttp', 'yaml', 'gauge.model', 'click') "
        "if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
