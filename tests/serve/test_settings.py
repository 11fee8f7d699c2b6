"""Settings from flags and the worker's environment variables."""

from __future__ import annotations

import pytest

from gauge.errors import ConfigError
from gauge.serve.engines.mock import MockEngine
from gauge.serve.engines.transformers import TransformersEngine
from gauge.serve.engines.vllm import VLLMEngine, engine_args
from gauge.serve.settings import DEFAULT_HOST, DEFAULT_MODEL, Settings, load_settings


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
    assert s.max_concurrency == 300  # worker-vllm's default
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
        "seed": 0,  # worker-vllm's SEED default
        "max_seq_len_to_capture": 8192,
    }


def test_an_empty_flag_is_refused_not_taken_as_a_setting() -> None:
    # `--api-key ""` would otherwise let `Authorization: Bearer ` through.
    with pytest.raises(ConfigError, match=r"^--api-key is empty; give a value or leave the flag"):
        load_settings({"api_key": ""}, {})
    assert load_settings({}, {"API_KEY": ""}).api_key is None


# vLLM's own parallelism: tensor, pipeline, data parallel size and executor backend

PARALLEL_ENV = {
    "ENGINE": "vllm",
    "TENSOR_PARALLEL_SIZE": "4",
    "PIPELINE_PARALLEL_SIZE": "2",
    "DATA_PARALLEL_SIZE": "3",
    "DISTRIBUTED_EXECUTOR_BACKEND": "ray",
}


def test_parallel_settings_from_the_worker_environment() -> None:
    s = load_settings({}, PARALLEL_ENV)
    assert (
        s.tensor_parallel_size,
        s.pipeline_parallel_size,
        s.data_parallel_size,
        s.distributed_executor_backend,
    ) == (4, 2, 3, "ray")
    assert s.unused(VLLMEngine.uses_settings) == []


def test_parallel_flags_override_the_environment() -> None:
    flags = {
        "tensor_parallel_size": "2",  # as click hands them over: strings
        "pipeline_parallel_size": "1",
        "data_parallel_size": None,  # a flag left out keeps the variable
        "distributed_executor_backend": "mp",
    }
    s = load_settings(flags, PARALLEL_ENV)
    assert (s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size) == (2, 1, 3)
    assert s.distributed_executor_backend == "mp"
    assert {"TENSOR_PARALLEL_SIZE", "DISTRIBUTED_EXECUTOR_BACKEND"} <= s.set_vars


def test_parallel_settings_default_to_unset() -> None:
    s = load_settings({"engine": "vllm"}, {})
    assert s.tensor_parallel_size is None and s.pipeline_parallel_size is None
    assert s.data_parallel_size is None and s.distributed_executor_backend is None


@pytest.mark.parametrize("backend", ["mp", "ray", "uni", "external_launcher"])
def test_every_vllm_executor_backend_is_accepted(backend: str) -> None:
    s = load_settings({"engine": "vllm", "distributed_executor_backend": backend}, {})
    assert s.distributed_executor_backend == backend


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TENSOR_PARALLEL_SIZE": "0"}, "TENSOR_PARALLEL_SIZE=0 is not valid: use a whole number"),
        ({"PIPELINE_PARALLEL_SIZE": "-2"}, "PIPELINE_PARALLEL_SIZE=-2 is not valid: use a whole"),
        ({"DATA_PARALLEL_SIZE": "two"}, "DATA_PARALLEL_SIZE='two' is not valid: use an integer"),
        ({"TENSOR_PARALLEL_SIZE": "1.5"}, "TENSOR_PARALLEL_SIZE='1.5' is not valid: use an int"),
        (
            {"DISTRIBUTED_EXECUTOR_BACKEND": "RAY"},
            "DISTRIBUTED_EXECUTOR_BACKEND='RAY' is not known: use mp (one node), ray",
        ),
        (
            {"DISTRIBUTED_EXECUTOR_BACKEND": "torchrun"},
            "uni or external_launcher",
        ),
        (
            {"DISTRIBUTED_EXECUTOR_BACKEND": "uni", "PIPELINE_PARALLEL_SIZE": "2"},
            "DISTRIBUTED_EXECUTOR_BACKEND=uni runs one GPU worker, but tensor x pipeline "
            "parallel size is 2: use mp (one node) or ray (several nodes)",
        ),
    ],
)
def test_invalid_parallel_settings_say_what_to_do(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"ENGINE": "vllm", **env})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_parallel_flag_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^TENSOR_PARALLEL_SIZE=0 is not valid"):
        load_settings({"engine": "vllm", "tensor_parallel_size": "0"}, {})
    with pytest.raises(ConfigError, match=r"^TENSOR_PARALLEL_SIZE=True is not valid"):
        load_settings({"engine": "vllm", "tensor_parallel_size": True}, {})


@pytest.mark.parametrize("engine", ["transformers", "mock"])
@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ("tensor_parallel_size", "tensor parallelism"),
        ("pipeline_parallel_size", "pipeline parallelism"),
        ("data_parallel_size", "data parallelism"),
    ],
)
def test_parallelism_needs_the_vllm_engine(engine: str, setting: str, what: str) -> None:
    var = setting.upper()
    with pytest.raises(ConfigError) as info:
        load_settings({"engine": engine}, {var: "2"})
    assert str(info.value) == (
        f"{var}=2: {what} needs --engine vllm (ENGINE=vllm); the {engine} engine runs in "
        f"one process, so set {var} to 1 or leave it unset"
    )


@pytest.mark.parametrize("engine", ["transformers", "mock"])
def test_an_executor_backend_needs_the_vllm_engine(engine: str) -> None:
    with pytest.raises(ConfigError, match=r"^DISTRIBUTED_EXECUTOR_BACKEND=mp: .* needs --engine"):
        load_settings({"engine": engine, "distributed_executor_backend": "mp"}, {})


def test_parallel_size_one_is_fine_with_any_engine() -> None:
    env = {"TENSOR_PARALLEL_SIZE": "1", "PIPELINE_PARALLEL_SIZE": "1", "DATA_PARALLEL_SIZE": "1"}
    for engine in ("transformers", "mock"):
        s = load_settings({"engine": engine}, env)
        assert s.tensor_parallel_size == 1
        # set but not read: start-up notes them, as for any other vllm-only setting
        assert "TENSOR_PARALLEL_SIZE" in s.unused(TransformersEngine.uses_settings)


class _Built(Exception):
    """Stops `gauge serve` right after its settings are loaded (no server started)."""


def _serve_settings(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Settings:
    import gauge.serve.engines as engines
    from gauge.cli.main import main

    seen: list[Settings] = []

    def build(settings: Settings) -> None:
        seen.append(settings)
        raise _Built

    monkeypatch.setattr(engines, "build_engine", build)
    with pytest.raises(_Built):
        main(["serve", *argv])
    return seen[0]


def test_gauge_serve_parallel_flags_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var, value in PARALLEL_ENV.items():
        monkeypatch.setenv(var, value)
    s = _serve_settings(
        monkeypatch,
        ["--tensor-parallel-size", "2", "--distributed-executor-backend", "mp"],
    )
    assert (s.engine, s.tensor_parallel_size, s.pipeline_parallel_size) == ("vllm", 2, 2)
    assert (s.data_parallel_size, s.distributed_executor_backend) == (3, "mp")
    assert engine_args(s)["tensor_parallel_size"] == 2


def test_gauge_serve_refuses_tensor_parallelism_without_vllm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gauge.cli.main import main

    monkeypatch.delenv("ENGINE", raising=False)
    monkeypatch.delenv("TENSOR_PARALLEL_SIZE", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["serve", "--engine", "mock", "--tensor-parallel-size", "2"])
    assert info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: TENSOR_PARALLEL_SIZE=2: tensor parallelism needs --engine vllm")
    assert "\n" not in err
