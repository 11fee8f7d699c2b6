"""Settings from flags and the worker's environment variables."""

from __future__ import annotations

import pytest

from gauge.errors import ConfigError
from gauge.serve.engines.mock import MockEngine
from gauge.serve.engines.transformers import TransformersEngine
from gauge.serve.engines.vllm import VLLMEngine
from gauge.serve.settings import DEFAULT_HOST, DEFAULT_MODEL, load_settings


def test_defaults_serve_the_bundled_model_on_localhost() -> None:
    s = load_settings({}, {})
    assert (s.engine, s.model_name, s.host, s.served_name) == (
        "transformers",
        DEFAULT_MODEL,
        DEFAULT_HOST,
        DEFAULT_MODEL,
    )
    assert s.host == "127.0.0.1"


def test_environment_values_and_flags_override_them() -> None:
    env = {
        "MODEL_NAME": "org/model",
        "MAX_MODEL_LEN": "2048",
        "ENFORCE_EAGER": "1",
        "TRUST_REMOTE_CODE": "0",
        "GPU_MEMORY_UTILIZATION": "0.8",
        "OPENAI_SERVED_MODEL_NAME_OVERRIDE": "alias",
        "MAX_CONCURRENCY": "",  # empty means unset
    }
    s = load_settings({"max_model_len": "4096", "port": None}, env)
    assert s.model_name == "org/model" and s.served_name == "alias"
    assert s.max_model_len == 4096  # the flag wins
    assert s.enforce_eager is True and s.trust_remote_code is False
    assert s.gpu_memory_utilization == 0.8
    assert s.max_concurrency == 256
    assert "MAX_CONCURRENCY" not in s.set_vars and "MAX_MODEL_LEN" in s.set_vars


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENFORCE_EAGER": "true"}, "ENFORCE_EAGER='true' is not valid: use 0 or 1"),
        ({"MAX_MODEL_LEN": "big"}, "MAX_MODEL_LEN='big' is not valid: use an integer"),
        ({"SWAP_SPACE": "x"}, "SWAP_SPACE='x' is not valid: use a number"),
        ({"MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY=0 must be greater than 0"),
        ({"GPU_MEMORY_UTILIZATION": "1.5"}, "GPU_MEMORY_UTILIZATION=1.5 must be in (0, 1]"),
        ({"ENGINE": "tgi"}, "ENGINE='tgi' is not known"),
        ({"OPENAI_RESPONSE_ROLE": "bot"}, "OPENAI_RESPONSE_ROLE='bot' must be"),
        ({"DEFAULT_BATCH_SIZE_GROWTH_FACTOR": "0.5"}, "DEFAULT_BATCH_SIZE_GROWTH_FACTOR=0.5"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unused_settings_per_engine() -> None:
    env = {"ENFORCE_EAGER": "1", "MAX_MODEL_LEN": "64", "QUANTIZATION": "awq", "SEED": "1"}
    s = load_settings({}, env)
    assert s.unused(TransformersEngine.uses_settings) == ["ENFORCE_EAGER", "QUANTIZATION"]
    assert s.unused(VLLMEngine.uses_settings) == []
    assert s.unused(MockEngine.uses_settings) == [
        "ENFORCE_EAGER",
        "MAX_MODEL_LEN",
        "QUANTIZATION",
        "SEED",
    ]


def test_vllm_engine_args_from_settings() -> None:
    env = {
        "MODEL_NAME": "org/m",
        "QUANTIZATION": "awq",
        "TENSOR_PARALLEL_SIZE": "2",
        "BASE_PATH": "/runpod-volume",
        "MAX_CONTEXT_LEN_TO_CAPTURE": "8192",
    }
    engine = VLLMEngine.from_settings(load_settings({"engine": "vllm"}, env))
    assert engine.engine_args == {
        "model": "org/m",
        "quantization": "awq",
        "tensor_parallel_size": 2,
        "download_dir": "/runpod-volume",
        "max_seq_len_to_capture": 8192,
    }


def test_an_empty_flag_is_refused_not_taken_as_a_setting() -> None:
    # `--api-key ""` would otherwise let `Authorization: Bearer ` through.
    with pytest.raises(ConfigError, match=r"^--api-key is empty; give a value or leave the flag"):
        load_settings({"api_key": ""}, {})
    assert load_settings({}, {"API_KEY": ""}).api_key is None
