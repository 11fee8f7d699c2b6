"""The model layer: types, GenerateConfig, Model, ModelAPI, registry and get_model.

Names are imported on first use, so `import gauge.model` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # content
    "Content": "content",
    "ContentText": "content",
    "ContentImage": "content",
    "ContentAudio": "content",
    "ContentVideo": "content",
    "ContentReasoning": "content",
    # messages
    "ChatMessage": "messages",
    "ChatMessageBase": "messages",
    "ChatMessageSystem": "messages",
    "ChatMessageUser": "messages",
    "ChatMessageAssistant": "messages",
    "ChatMessageTool": "messages",
    # tools
    "ToolInfo": "tools",
    "ToolParams": "tools",
    "ToolCall": "tools",
    "ToolChoice": "tools",
    "ToolFunction": "tools",
    "ToolCallError": "tools",
    # output
    "ModelOutput": "output",
    "ChatCompletionChoice": "output",
    "ModelUsage": "output",
    "StopReason": "output",
    "Logprob": "output",
    "TopLogprob": "output",
    "Logprobs": "output",
    # config
    "GenerateConfig": "config",
    "ResponseSchema": "config",
    # provider contract and registry
    "ModelAPI": "api",
    "ModelCall": "call",
    "RetryDecision": "api",
    "Secret": "api",
    "modelapi": "registry",
    "provider_names": "registry",
    # models
    "Model": "model",
    "model_usage": "model",
    "get_model": "factory",
    "model_from_config": "factory",
    "SyncModel": "sync",
    "RetryPolicy": "retry",
    # loglikelihood scoring
    "LoglikelihoodRequest": "scoring",
    "Loglikelihood": "scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gauge.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gauge.model.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from gauge.model.api import ModelAPI, RetryDecision, Secret
    from gauge.model.call import ModelCall
    from gauge.model.config import GenerateConfig, ResponseSchema
    from gauge.model.content import (
        Content,
        ContentAudio,
        ContentImage,
        ContentReasoning,
        ContentText,
        ContentVideo,
    )
    from gauge.model.factory import get_model, model_from_config
    from gauge.model.messages import (
        ChatMessage,
        ChatMessageAssistant,
        ChatMessageBase,
        ChatMessageSystem,
        ChatMessageTool,
        ChatMessageUser,
    )
    from gauge.model.model import Model, model_usage
    from gauge.model.output import (
        ChatCompletionChoice,
        Logprob,
        Logprobs,
        ModelOutput,
        ModelUsage,
        StopReason,
        TopLogprob,
    )
    from gauge.model.registry import modelapi, provider_names
    from gauge.model.retry import RetryPolicy
    from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
    from gauge.model.sync import SyncModel
    from gauge.model.tools import (
        ToolCall,
        ToolCallError,
        ToolChoice,
        ToolFunction,
        ToolInfo,
        ToolParams,
    )
