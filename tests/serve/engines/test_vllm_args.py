"""`engine_args`: settings -> vLLM's AsyncEngineArgs keywords (pure; no vllm or GPU needed)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from gauge.errors import ConfigError, MissingExtra
from gauge.serve.engines.vllm import VLLMEngine, engine_args
from gauge.serve.settings import load_settings

# The keywords of vLLM's EngineArgs/AsyncEngineArgs these settings map to.
VLLM_PARALLEL_KEYWORDS = {
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "distributed_executor_backend",
}


def test_only_the_model_when_nothing_is_set() -> None:
    # vLLM's defaults apply: one GPU, its own choice of executor; SEED is worker-vllm's 0.
    assert engine_args(load_settings({"engine": "vllm", "model_name": "org/m"}, {})) == {
        "model": "org/m",
        "seed": 0,
    }


def test_tensor_parallel_on_one_node() -> None:
    s = load_settings(
        {"engine": "vllm", "tensor_parallel_size": "2"}, {"MODEL_NAME": "org/m", "SEED": "0"}
    )
    # SEED=0 is a value, not "off": it is passed on.
    assert engine_args(s) == {"model": "org/m", "tensor_parallel_size": 2, "seed": 0}


def test_every_parallel_setting_from_environment_and_flags() -> None:
    env = {
        "ENGINE": "vllm",
        "MODEL_NAME": "meta-llama/Llama-3.1-70B-Instruct",
        "TENSOR_PARALLEL_SIZE": "8",
        "PIPELINE_PARALLEL_SIZE": "2",
        "DISTRIBUTED_EXECUTOR_BACKEND": "mp",
        "GPU_MEMORY_UTILIZATION": "0.9",
    }
    flags = {"distributed_executor_backend": "ray", "data_parallel_size": "1"}
    assert engine_args(load_settings(flags, env)) == {
        "model": "meta-llama/Llama-3.1-70B-Instruct",
        "tensor_parallel_size": 8,
        "pipeline_parallel_size": 2,
        "data_parallel_size": 1,
        "distributed_executor_backend": "ray",  # the flag wins over the variable
        "gpu_memory_utilization": 0.9,
        "seed": 0,
    }


def test_data_parallel_replicas() -> None:
    s = load_settings({"engine": "vllm", "data_parallel_size": "4"}, {"MODEL_NAME": "m"})
    assert engine_args(s) == {"model": "m", "data_parallel_size": 4, "seed": 0}


def test_the_parallel_keywords_are_vllms_names() -> None:
    env = {
        "ENGINE": "vllm",
        "TENSOR_PARALLEL_SIZE": "2",
        "PIPELINE_PARALLEL_SIZE": "2",
        "DATA_PARALLEL_SIZE": "2",
        "DISTRIBUTED_EXECUTOR_BACKEND": "ray",
    }
    args = engine_args(load_settings({}, env))
    assert set(args) >= VLLM_PARALLEL_KEYWORDS
    uses = VLLMEngine.uses_settings
    assert uses >= {k.upper() for k in VLLM_PARALLEL_KEYWORDS}


def test_from_settings_keeps_the_built_args() -> None:
    s = load_settings(
        {"engine": "vllm", "model_name": "org/m", "pipeline_parallel_size": "3"},
        {"DISTRIBUTED_EXECUTOR_BACKEND": "ray"},
    )
    engine = VLLMEngine.from_settings(s)
    assert engine.engine_args == engine_args(s)
    assert engine.engine_args == {
        "model": "org/m",
        "pipeline_parallel_size": 3,
        "distributed_executor_backend": "ray",
        "seed": 0,
    }


class _FakeArgs:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def _fake_vllm(monkeypatch: pytest.MonkeyPatch, reject: str | None = None) -> list[Any]:
    """A stand-in `vllm` module: records the AsyncEngineArgs the engine is built from."""
    built: list[Any] = []

    def from_engine_args(args: _FakeArgs) -> Any:
        if reject is not None and reject in args.kwargs:
            raise TypeError(f"__init__() got an unexpected keyword argument '{reject}'")
        built.append(args.kwargs)
        return SimpleNamespace()

    module = ModuleType("vllm")
    module.AsyncEngineArgs = _FakeArgs  # type: ignore[attr-defined]
    module.AsyncLLMEngine = SimpleNamespace(from_engine_args=from_engine_args)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return built


def test_the_engine_starts_with_the_parallel_args(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _fake_vllm(monkeypatch)
    s = load_settings(
        {"engine": "vllm", "tensor_parallel_size": "2", "distributed_executor_backend": "mp"},
        {"MODEL_NAME": "org/m", "DATA_PARALLEL_SIZE": "2"},
    )
    VLLMEngine.from_settings(s)._start_engine()
    assert built == [
        {
            "model": "org/m",
            "tensor_parallel_size": 2,
            "data_parallel_size": 2,
            "distributed_executor_backend": "mp",
            "seed": 0,
        }
    ]


def test_an_older_vllm_without_a_keyword_is_one_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_vllm(monkeypatch, reject="data_parallel_size")
    s = load_settings({"engine": "vllm", "data_parallel_size": "2"}, {})
    with pytest.raises(
        ConfigError, match=r"this vllm version rejects a setting.*data_parallel_size"
    ):
        VLLMEngine.from_settings(s)._start_engine()


def test_ray_backend_without_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _fake_vllm(monkeypatch)
    find_spec = importlib.util.find_spec

    def no_ray(name: str, *args: Any) -> Any:
        return None if name == "ray" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_ray)
    s = load_settings(
        {"engine": "vllm", "pipeline_parallel_size": "2", "distributed_executor_backend": "ray"},
        {},
    )
    with pytest.raises(MissingExtra) as info:
        VLLMEngine.from_settings(s)._start_engine()
    assert str(info.value).startswith("DISTRIBUTED_EXECUTOR_BACKEND=ray needs the ray package")
    assert built == []


def test_ray_backend_with_ray_installed_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _fake_vllm(monkeypatch)
    find_spec = importlib.util.find_spec

    def with_ray(name: str, *args: Any) -> Any:
        return SimpleNamespace(name="ray") if name == "ray" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", with_ray)
    s = load_settings({"engine": "vllm", "distributed_executor_backend": "ray"}, {})
    VLLMEngine.from_settings(s)._start_engine()
    assert built[0]["distributed_executor_backend"] == "ray"
