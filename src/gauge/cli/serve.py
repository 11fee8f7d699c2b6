"""`gauge serve`: put a local model behind an OpenAI-compatible HTTP server."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

import click

from gauge.errors import ConfigError, MissingExtra, ModelError
from gauge.serve.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    SETTING_FIELDS,
    Settings,
    env_var,
    flag_name,
)

_HELP = {
    "engine": "transformers (default; CPU or GPU), vllm (CUDA GPU) or mock (load tests).",
    "model_name": "Model to serve: a Hub id, a directory, or gauge-tiny (the bundled model).",
    "host": (
        f"Address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every "
        "interface, so other machines can connect)."
    ),
    "port": f"TCP port to listen on (default {DEFAULT_PORT}).",
    "api_key": "Require 'Authorization: Bearer KEY' on every route but /health (default: none).",
    "max_concurrency": (
        "Requests admitted at once (default 256); the next gets 429 with Retry-After. "
        "The worker: RunPod jobs taken at once."
    ),
    "openai_served_model_name_override": (
        "Model id clients send and /v1/models lists (default: --model)."
    ),
    "openai_response_role": "Role of the reply message: assistant (default), user or system.",
    "raw_openai_output": (
        "Worker only: stream OpenAI route events as raw 'data: ...' text (1, default) "
        "or as chunk objects (0)."
    ),
    "default_batch_size": "Worker only: most tokens (or events) per streamed output (default 50).",
    "default_min_batch_size": "Worker only: tokens in the first streamed output (default 1).",
    "default_batch_size_growth_factor": (
        "Worker only: how much each streamed output grows over the last (default 3)."
    ),
    "disable_log_stats": "1: no throughput line every 10 s while there is traffic.",
    "disable_log_requests": "1: no access log and no line per request.",
    "model_revision": "Branch, tag or commit of the model on the Hub.",
    "max_model_len": "Longest prompt + output in tokens (default: the model's own limit).",
    "base_path": "Directory the weights are downloaded to and read from (the cache).",
    "load_format": "vllm: weight format (auto, safetensors, pt, ...).",
    "hf_token": "Hugging Face token for gated or private models (never printed).",
    "quantization": "vllm: quantization method (awq, gptq, fp8, ...).",
    "trust_remote_code": "1: run the model's own code from the Hub (only for models you trust).",
    "seed": "Seed that makes sampled requests without their own seed reproducible.",
    "kv_cache_dtype": "vllm: data type of the KV cache (auto, fp8, ...).",
    "dtype": "Weight and activation data type (auto, float16, bfloat16, float32).",
    "tokenizer_name": "Tokenizer to use instead of the model's (a Hub id or directory).",
    "tokenizer_revision": "vllm: branch, tag or commit of the tokenizer.",
    "custom_chat_template": "Chat template (Jinja), or the path of a file holding one.",
    "gpu_memory_utilization": "vllm: fraction of GPU memory to use, in (0, 1].",
    "max_parallel_loading_workers": "vllm: workers loading the weights at once.",
    "block_size": "vllm: tokens per KV-cache block.",
    "swap_space": "vllm: CPU swap space per GPU, in GiB.",
    "enforce_eager": "vllm, 1: no CUDA graphs (slower, less memory).",
    "max_context_len_to_capture": "vllm: longest sequence CUDA graphs are captured for.",
    "disable_custom_all_reduce": "vllm, 1: NCCL's all-reduce instead of vLLM's own.",
    "tensor_parallel_size": "vllm: GPUs each layer is split across (within a node).",
    "pipeline_parallel_size": "vllm: stages the layers are split into (e.g. one per node).",
    "data_parallel_size": "vllm: model replicas, each on tensor x pipeline GPUs.",
    "distributed_executor_backend": (
        "vllm: mp (one node), ray (several nodes; start a Ray cluster first), "
        "uni or external_launcher."
    ),
    "batch_dir": (
        "Directory for the batch API's files and batches, kept across restarts "
        "(default: a temporary one, removed at exit)."
    ),
    "batch_concurrency": (
        "Batch requests answered at once (default 32), so real-time requests are still served."
    ),
    "batch_max_file_mb": "Largest file POST /v1/files takes, in MiB (default 200, as OpenAI).",
    "mock_latency": "mock: seconds before the first token (default 0).",
    "mock_token_latency": "mock: seconds between tokens (default 0).",
}

_KINDS = {"bool": "0|1", "int": "INTEGER", "float": "NUMBER"}


def _options(command: Any) -> Any:
    # One flag per setting, named after its environment variable (see gauge.serve.settings).
    for name in reversed(list(SETTING_FIELDS)):
        kind = str(SETTING_FIELDS[name].type).split(" ")[0]
        command = click.option(
            flag_name(name),
            name,
            default=None,
            metavar=_KINDS.get(kind, "TEXT"),
            help=f"{_HELP[name]} Env var {env_var(name)}.",
        )(command)
    return command


_EPILOG = (
    "Every option is also an environment variable, named after it in upper case "
    "(MODEL_NAME, MAX_MODEL_LEN, ...: the RunPod vLLM worker's names), except "
    "GAUGE_SERVE_HOST, GAUGE_SERVE_PORT, GAUGE_SERVE_API_KEY and GAUGE_SERVE_BATCH_*: "
    "a bare HOST, PORT or "
    "API_KEY is never read. A flag wins over its variable. Start-up prints every "
    "setting given and where it came from. Booleans are 0 or 1. See docs/serve.md."
)


@click.command(
    name="serve",
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@_options
def serve_command(**flags: Any) -> None:
    """Serve a local model over OpenAI's API: chat, completions, batches, models, metrics.

    With no options it serves the bundled gauge-tiny model (transformers engine,
    CPU) on http://127.0.0.1:8088/v1 until Ctrl-C. Evaluate it from another shell:

    \b
      gauge eval examples/arithmetic.py --model openai-api/local/gauge-tiny \\
          -M base_url=http://127.0.0.1:8088/v1
    """
    from gauge.serve.engines import build_engine
    from gauge.serve.settings import banner, check_generic, load_settings

    settings = load_settings(flags)
    notes = check_generic(settings)
    for line in banner(settings, notes):
        click.echo(line, err=True)
    try:
        import uvicorn

        from gauge.serve.app import build_app
        from gauge.serve.batch_api import check_batch_dir
    except ModuleNotFoundError as ex:
        raise MissingExtra(f"gauge serve needs {ex.name!r}: pip install 'gauge[serve]'") from None
    check_batch_dir(settings)  # before the socket and the model: a bad directory fails at once
    engine = build_engine(settings)  # not loaded yet: that starts with the server
    # Bound before the model loads: a port in use or a wrong address fails at once.
    sock = bind(settings)
    unused = settings.unused(engine.uses_settings)
    if unused:
        click.echo(f"note: the {engine.name} engine does not use: {', '.join(unused)}", err=True)

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}/v1"
    app = build_app(engine, settings)

    failure: list[str] = []

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                self._announce = asyncio.ensure_future(announce(self))

    async def announce(server: Server) -> None:
        # Once both hold: the socket listens (startup) and the model is warm.
        state = app.state.server
        await state.started.wait()
        if state.start_error is not None:
            failure.append(state.start_error)
            server.should_exit = True
            return
        click.echo(f"serving {settings.served_name} ({engine.name}) at {url}", err=True)

    click.echo(f"loading {settings.model_name} with the {engine.name} engine ...", err=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info" if not settings.disable_log_requests else "warning",
        access_log=not settings.disable_log_requests,
    )
    _log_to_stderr(settings.disable_log_requests)
    with sock:
        Server(config).run(sockets=[sock])
    if failure:
        raise ModelError(f"the {engine.name} engine failed to start: {failure[0]}")


def bind(settings: Settings) -> socket.socket:
    """A socket bound to the settings' host and port, or one line saying what to change."""
    host, port = settings.host, settings.port
    host_from = _from(settings, "host")
    port_from = _from(settings, "port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError):
        raise ConfigError(
            f"cannot listen on {host!r} ({host_from}): no such address or host name here; "
            f"use {flag_name('host')} 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own
        sock.bind(address)
    except OSError as ex:
        sock.close()
        if ex.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} ({port_from}) is already in use on {host}: stop the program "
                f"listening there (another gauge serve?) or pick a free port with "
                f"{flag_name('port')} N"
            ) from None
        if ex.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"cannot listen on {host} ({host_from}): it is not an address of this "
                f"machine; use {flag_name('host')} 127.0.0.1 (this machine only) or "
                "0.0.0.0 (every interface)"
            ) from None
        if ex.errno == errno.EACCES:
            raise ConfigError(
                f"cannot listen on port {port} ({port_from}): ports below 1024 need root; "
                f"pick one from 1024 up with {flag_name('port')} N"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {ex.strerror}") from None
    return sock


def _from(settings: Settings, name: str) -> str:
    source = settings.sources.get(name)
    if source is None:
        return "the default"
    return f"from {source}"


def _log_to_stderr(quiet: bool) -> None:
    # The stats line and request errors go to stderr, beside uvicorn's own log.
    logger = logging.getLogger("gauge.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
