"""`gauge serve`: put a local model behind an OpenAI-compatible HTTP server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click

from gauge.errors import MissingExtra, ModelError
from gauge.serve.settings import DEFAULT_HOST, DEFAULT_PORT, SETTING_FIELDS

_HELP = {
    "engine": "transformers (default; CPU or GPU), vllm (CUDA GPU) or mock (load tests).",
    "model_name": "Model to serve: a Hub id, a directory, or gauge-tiny (the bundled model).",
    "host": f"Interface to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes the server).",
    "port": f"Port (default {DEFAULT_PORT}).",
    "api_key": "Require 'Authorization: Bearer KEY' on every route but /health.",
    "max_concurrency": "Requests admitted at once; the next gets 429 with Retry-After.",
    "tensor_parallel_size": "vllm: GPUs each layer is split across (within a node).",
    "pipeline_parallel_size": "vllm: stages the layers are split into (e.g. one per node).",
    "data_parallel_size": "vllm: model replicas, each on tensor x pipeline GPUs.",
    "distributed_executor_backend": (
        "vllm: mp (one node), ray (several nodes; start a Ray cluster first), "
        "uni or external_launcher."
    ),
}


def _options(command: Any) -> Any:
    # One flag per setting, named after its environment variable (see gauge.serve.settings).
    for name in reversed(list(SETTING_FIELDS)):
        flag = "--" + name.replace("_", "-")
        if name == "model_name":
            flag = "--model"
        var = name.upper()
        default_help = f"Env var {var}" + (
            "; booleans are 0 or 1." if "bool" in str(SETTING_FIELDS[name].type) else "."
        )
        command = click.option(
            flag,
            name,
            default=None,
            metavar="VALUE",
            help=f"{_HELP.get(name, '')} {default_help}".strip(),
        )(command)
    return command


@click.command(name="serve")
@_options
def serve_command(**flags: Any) -> None:
    """Serve a local model over OpenAI's API (chat, completions, models, health, metrics).

    With no options it serves the bundled gauge-tiny model on 127.0.0.1. Every
    option can also be set by its environment variable (MODEL_NAME, MAX_MODEL_LEN, ...).
    """
    from gauge.serve.engines import build_engine
    from gauge.serve.settings import load_settings

    settings = load_settings(flags)
    engine = build_engine(settings)
    unused = settings.unused(engine.uses_settings)
    if unused:
        click.echo(f"note: the {engine.name} engine does not use: {', '.join(unused)}", err=True)
    try:
        import uvicorn

        from gauge.serve.app import build_app
    except ModuleNotFoundError as ex:
        raise MissingExtra(f"gauge serve needs {ex.name!r}: pip install 'gauge[serve]'") from None

    url = f"http://{settings.host}:{settings.port}/v1"
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
    Server(config).run()
    if failure:
        raise ModelError(f"the {engine.name} engine failed to start: {failure[0]}")


def _log_to_stderr(quiet: bool) -> None:
    # The stats line and request errors go to stderr, beside uvicorn's own log.
    logger = logging.getLogger("gauge.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
