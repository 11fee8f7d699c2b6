"""Engines the server runs: transformers (default), vllm (GPU, import-guarded), mock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gauge.errors import ConfigError
from gauge.serve.settings import ENGINES, Settings

if TYPE_CHECKING:
    from gauge.serve.engines.base import Engine

__all__ = ["ENGINES", "build_engine", "engine_class"]


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under `name` (imported on demand)."""
    if name == "transformers":
        from gauge.serve.engines.transformers import TransformersEngine

        return TransformersEngine
    if name == "vllm":
        from gauge.serve.engines.vllm import VLLMEngine

        return VLLMEngine
    if name == "mock":
        from gauge.serve.engines.mock import MockEngine

        return MockEngine
    raise ConfigError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}")


def build_engine(settings: Settings) -> Engine:
    """The engine that `settings` ask for (not loaded yet: call `start()`). A package
    the engine needs and this machine lacks is an error now, before any port is bound."""
    if settings.engine == "vllm":
        from gauge.serve.engines.vllm import require

        require(settings)
    return engine_class(settings.engine).from_settings(settings)
