"""Server settings: from flags or from the serverless worker's environment variables.

Every setting has one environment variable: the RunPod vLLM worker's name
(MODEL_NAME, MAX_MODEL_LEN, ...), or gauge's own where worker-vllm has none and
a bare name would be one that other programs set: GAUGE_SERVE_HOST,
GAUGE_SERVE_PORT, GAUGE_SERVE_API_KEY and the GAUGE_SERVE_BATCH_* settings of
the batch API (never HOST, PORT or API_KEY, so a
stray variable can neither turn auth on nor move the server; `check_generic`
refuses or notes them). A flag of the same name in lower case with dashes
(`--max-model-len`) wins over the variable. Booleans are 0 or 1. A value that
does not parse stops start-up with one line naming the variable. `unused()`
lists the settings that were set but that the chosen engine does not read, and
`banner()` every setting given and where it came from, so start-up can say so.

The parallelism settings (TENSOR_PARALLEL_SIZE, PIPELINE_PARALLEL_SIZE,
DATA_PARALLEL_SIZE, DISTRIBUTED_EXECUTOR_BACKEND) are vLLM's own: with another
engine anything but 1 or unset is an error, not a note, since the model would
silently run on one device.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from gauge.errors import ConfigError

ENGINES = ("transformers", "vllm", "mock")
"""The engines `ENGINE` may name (gauge.serve.engines builds them)."""

EXECUTOR_BACKENDS = ("mp", "ray", "uni", "external_launcher")
"""vLLM's `distributed_executor_backend` values: mp (one node), ray (several nodes)."""

PARALLEL_SIZES = {
    "tensor_parallel_size": "tensor parallelism",
    "pipeline_parallel_size": "pipeline parallelism",
    "data_parallel_size": "data parallelism",
}
"""The parallel-size settings (whole numbers, 1 = off) and what each one turns on."""

DEFAULT_MODEL = "gauge-tiny"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8088

GAUGE_NAMES = {
    "host": "GAUGE_SERVE_HOST",
    "port": "GAUGE_SERVE_PORT",
    "api_key": "GAUGE_SERVE_API_KEY",
    "batch_dir": "GAUGE_SERVE_BATCH_DIR",
    "batch_concurrency": "GAUGE_SERVE_BATCH_CONCURRENCY",
    "batch_max_file_mb": "GAUGE_SERVE_BATCH_MAX_FILE_MB",
}
"""gauge's own variables for the settings only the HTTP server reads (worker-vllm has none)."""

GENERIC_NAMES = {"host": "HOST", "port": "PORT", "api_key": "API_KEY"}
"""Bare names that shells, PaaS and other tools set: never read (see `check_generic`)."""

SECRETS = frozenset({"api_key", "hf_token"})
"""Settings whose values start-up never prints."""

# Read by the server or the worker whatever the engine.
SERVER_VARS = frozenset(
    {
        "ENGINE",
        "MODEL_NAME",
        *GAUGE_NAMES.values(),
        "MAX_CONCURRENCY",
        "OPENAI_SERVED_MODEL_NAME_OVERRIDE",
        "OPENAI_RESPONSE_ROLE",
        "RAW_OPENAI_OUTPUT",
        "DEFAULT_BATCH_SIZE",
        "DEFAULT_MIN_BATCH_SIZE",
        "DEFAULT_BATCH_SIZE_GROWTH_FACTOR",
        "DISABLE_LOG_STATS",
        "DISABLE_LOG_REQUESTS",
    }
)


@dataclass(slots=True)
class Settings:
    """Everything `gauge serve` and the worker are configured with."""

    engine: str = "transformers"
    model_name: str = DEFAULT_MODEL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = field(default=None, repr=False)
    max_concurrency: int = 300
    openai_served_model_name_override: str | None = None
    openai_response_role: str = "assistant"
    raw_openai_output: bool = True
    default_batch_size: int = 50
    default_min_batch_size: int = 1
    default_batch_size_growth_factor: float = 3.0
    # worker-vllm's defaults: logs off unless asked for (DISABLE_LOG_*=0), SEED 0
    disable_log_stats: bool = True
    disable_log_requests: bool = True
    # model loading
    model_revision: str | None = None
    max_model_len: int | None = None
    base_path: str | None = None
    load_format: str | None = None
    hf_token: str | None = field(default=None, repr=False)
    quantization: str | None = None
    trust_remote_code: bool = False
    seed: int | None = 0
    kv_cache_dtype: str | None = None
    dtype: str | None = None
    tokenizer_name: str | None = None
    tokenizer_revision: str | None = None
    custom_chat_template: str | None = None
    gpu_memory_utilization: float | None = None
    max_parallel_loading_workers: int | None = None
    block_size: int | None = None
    swap_space: float | None = None
    enforce_eager: bool = False
    max_context_len_to_capture: int | None = None
    disable_custom_all_reduce: bool = False
    # vLLM's parallelism (gpu.md): GPUs = tensor x pipeline x data parallel size
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    data_parallel_size: int | None = None
    distributed_executor_backend: str | None = None
    # the batch API (gauge.serve.batch_api): where files and batches live, lines run at once
    batch_dir: str | None = None
    batch_concurrency: int = 32
    batch_max_file_mb: int = 200
    # the mock engine's latencies (seconds), for load tests
    mock_latency: float = 0.0
    mock_token_latency: float = 0.0
    set_vars: frozenset[str] = frozenset()
    """Variables given by environment or flag (for `unused`)."""
    sources: dict[str, str] = field(default_factory=dict)
    """Where each setting given came from: its flag (`--port`) or variable (`GAUGE_SERVE_PORT`)."""

    @property
    def served_name(self) -> str:
        """The model id clients send and `/v1/models` lists."""
        return self.openai_served_model_name_override or self.model_name

    def unused(self, engine_uses: frozenset[str]) -> list[str]:
        """Settings that were set but that neither the server nor the engine reads."""
        return sorted(self.set_vars - SERVER_VARS - engine_uses)


def env_var(name: str) -> str:
    """The environment variable of setting `name` (`max_model_len` -> MAX_MODEL_LEN)."""
    return GAUGE_NAMES.get(name, name.upper())


def flag_name(name: str) -> str:
    """The `gauge serve` flag of setting `name` (`max_model_len` -> --max-model-len)."""
    return "--model" if name == "model_name" else "--" + name.replace("_", "-")


SETTING_FIELDS = {f.name: f for f in fields(Settings) if f.name not in ("set_vars", "sources")}


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from `environ` (default os.environ), overridden by non-None `flags`."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    given: set[str] = set()
    sources: dict[str, str] = {}
    for name, spec in SETTING_FIELDS.items():
        var = env_var(name)
        raw = environ.get(var)
        if raw is not None and raw.strip() != "":
            values[name] = _parse(var, raw.strip(), spec.type)
            given.add(var)
            sources[name] = var
    for name, value in (flags or {}).items():
        if name not in SETTING_FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            var = env_var(name)
            if isinstance(value, str) and not value.strip():
                # An empty flag would be a setting nobody meant (an empty API key
                # would let `Bearer ` through); the environment treats empty as unset.
                raise ConfigError(
                    f"--{name.replace('_', '-')} is empty; give a value or leave the flag out"
                )
            values[name] = (
                _parse(var, value, SETTING_FIELDS[name].type) if isinstance(value, str) else value
            )
            given.add(var)
            sources[name] = flag_name(name)
    settings = Settings(**values, set_vars=frozenset(given), sources=sources)
    _check(settings)
    return settings


def _parse(var: str, raw: str, kind: Any) -> Any:
    text = str(kind)
    try:
        if text.startswith("bool"):
            if raw not in ("0", "1"):
                raise ValueError
            return raw == "1"
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
    except ValueError:
        want = {"b": "0 or 1", "i": "an integer", "f": "a number"}[text[0]]
        raise ConfigError(f"{var}={raw!r} is not valid: use {want}") from None
    return raw


def _check(s: Settings) -> None:
    def positive(var: str, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ConfigError(f"{var}={value} must be greater than 0")

    positive("MAX_CONCURRENCY", s.max_concurrency)
    positive("DEFAULT_BATCH_SIZE", s.default_batch_size)
    positive("DEFAULT_MIN_BATCH_SIZE", s.default_min_batch_size)
    positive("MAX_MODEL_LEN", s.max_model_len)
    positive("BLOCK_SIZE", s.block_size)
    positive(env_var("batch_concurrency"), s.batch_concurrency)
    positive(env_var("batch_max_file_mb"), s.batch_max_file_mb)
    if s.default_batch_size_growth_factor < 1:
        raise ConfigError(
            f"DEFAULT_BATCH_SIZE_GROWTH_FACTOR={s.default_batch_size_growth_factor} "
            "must be at least 1"
        )
    if s.gpu_memory_utilization is not None and not 0 < s.gpu_memory_utilization <= 1:
        raise ConfigError(f"GPU_MEMORY_UTILIZATION={s.gpu_memory_utilization} must be in (0, 1]")
    if not 0 < s.port < 65536:
        raise ConfigError(f"{env_var('port')}={s.port} must be between 1 and 65535")
    if s.openai_response_role not in ("assistant", "user", "system"):
        raise ConfigError(
            f"OPENAI_RESPONSE_ROLE={s.openai_response_role!r} must be assistant, user or system"
        )
    if s.mock_latency < 0 or s.mock_token_latency < 0:
        raise ConfigError("MOCK_LATENCY and MOCK_TOKEN_LATENCY must be 0 or more seconds")
    if s.engine not in ENGINES:
        raise ConfigError(f"ENGINE={s.engine!r} is not known; use one of {', '.join(ENGINES)}")
    _check_parallel(s)


def _check_parallel(s: Settings) -> None:
    """vLLM's parallelism settings: whole numbers >= 1, a known backend, engine vllm."""
    for name, what in PARALLEL_SIZES.items():
        value = getattr(s, name)
        var = env_var(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{var}={value!r} is not valid: use a whole number of 1 or more "
                f"(the number of GPUs for {what}; 1 turns it off)"
            )
        if value > 1 and s.engine != "vllm":
            raise ConfigError(
                f"{var}={value}: {what} needs --engine vllm (ENGINE=vllm); the {s.engine} "
                f"engine runs in one process, so set {var} to 1 or leave it unset"
            )
    backend = s.distributed_executor_backend
    if backend is None:
        return
    if backend not in EXECUTOR_BACKENDS:
        raise ConfigError(
            f"DISTRIBUTED_EXECUTOR_BACKEND={backend!r} is not known: use mp (one node), "
            "ray (several nodes, with a Ray cluster started), uni or external_launcher"
        )
    if s.engine != "vllm":
        raise ConfigError(
            f"DISTRIBUTED_EXECUTOR_BACKEND={backend}: a distributed executor needs "
            f"--engine vllm (ENGINE=vllm); the {s.engine} engine has none, so leave it unset"
        )
    workers = (s.tensor_parallel_size or 1) * (s.pipeline_parallel_size or 1)
    if backend == "uni" and workers > 1:
        raise ConfigError(
            f"DISTRIBUTED_EXECUTOR_BACKEND=uni runs one GPU worker, but tensor x pipeline "
            f"parallel size is {workers}: use mp (one node) or ray (several nodes)"
        )


# -- start-up: the generic names and the banner ----------------------------------------------

ALWAYS_SHOWN = ("engine", "model_name", "host", "port", "api_key")
"""Settings the banner shows even at their defaults: what runs, where, and whether with auth."""


def check_generic(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Notes for a bare HOST, PORT or API_KEY in `environ`; stops start-up when one mattered.

    None of them is read. A HOST or PORT whose value differs from the setting, when
    no flag or GAUGE_SERVE_ variable gave that setting, is an error: someone may have
    meant it (earlier versions read it), and serving elsewhere without saying so is
    worse than one line saying which name to use. API_KEY is only noted: ignoring it
    cannot turn auth on. The worker reads none of them and does not call this.
    """
    environ = os.environ if environ is None else environ
    notes = []
    for name, bare in GENERIC_NAMES.items():
        raw = environ.get(bare, "").strip()
        if not raw:
            continue
        ours, flag = env_var(name), flag_name(name)
        if (
            name != "api_key"
            and name not in settings.sources
            and raw != str(getattr(settings, name))
        ):
            current = getattr(settings, name)
            raise ConfigError(
                f"{bare}={raw!r} is in the environment, but gauge serve reads {ours}, "
                f"not {bare}: to serve on {raw} use {flag} {raw} (or {ours}={raw}); "
                f"to keep {current}, unset {bare} or pass {flag} {current}"
            )
        notes.append(
            f"note: {bare} in the environment is not read; gauge serve uses {flag} or {ours}"
        )
    return notes


def banner(
    settings: Settings, notes: Sequence[str] = (), always: Sequence[str] = ALWAYS_SHOWN
) -> list[str]:
    """Start-up lines: the `always` settings, every other one given, and where each came from.

    Secrets (the API key, HF_TOKEN) show as stars. `notes` (from `check_generic`)
    follow, then, when `always` holds the host, a warning if the server takes outside
    connections without a key.
    """
    names = [*always, *(n for n in SETTING_FIELDS if n in settings.sources and n not in always)]
    items = [(f"{env_var(n)}={_shown(settings, n)}", _source(settings, n)) for n in names]
    width = max(len(item) for item, _ in items)
    lines = ["settings (a flag wins over its environment variable):"]
    lines += [f"  {item:<{width}}  {source}" for item, source in items]
    lines += notes
    if "host" in always and settings.api_key is None and not _loopback(settings.host):
        lines.append(
            f"warning: {settings.host} takes connections from other machines and no API key "
            f"is set: anyone who reaches port {settings.port} can use the model "
            f"(set --api-key or {env_var('api_key')})"
        )
    return lines


def _shown(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if name in SECRETS:
        return "(unset: no auth)" if name == "api_key" and value is None else "****"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _source(settings: Settings, name: str) -> str:
    source = settings.sources.get(name)
    if source is None:
        return "default"
    return f"from {source}" if source.startswith("--") else "from the environment"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
