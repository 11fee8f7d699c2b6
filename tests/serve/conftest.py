"""Serve apps on 127.0.0.1 (uvicorn in a thread); validate bodies against the OpenAI spec."""

from __future__ import annotations

import copy
import functools
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gauge.serve.app import build_app
from gauge.serve.engines.base import Engine
from gauge.serve.engines.mock import MockEngine
from gauge.serve.settings import Settings
from gauge.testing import openai_schema


class ServerThread:
    """A real uvicorn server for one app, on a free port, in a background thread."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        import uvicorn

        self.engine = engine
        self.settings = settings
        self.app = build_app(engine, settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> ServerThread:
        self.thread.start()
        if not wait_ready:
            while not self.server.started:
                time.sleep(0.01)
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.root}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """`serve(engine, **settings)` starts a server; every one is stopped after the test."""
    started: list[ServerThread] = []

    def start(
        engine: Engine | None = None, wait_ready: bool = True, **settings: Any
    ) -> ServerThread:
        settings.setdefault("disable_log_stats", True)
        settings.setdefault("disable_log_requests", True)
        engine = engine or MockEngine(settings.get("model_name", "mock-model"))
        settings.setdefault("model_name", engine.model_name)
        server = ServerThread(engine, Settings(engine=engine.name, **settings))
        server.start(wait_ready=wait_ready)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@functools.cache
def _validator(name: str, stream_completion: bool = False) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = openai_schema._rewrite_nullable(orjson.loads(openai_schema.SPEC_PATH.read_bytes()))
    if stream_completion:
        # The spec has no chunk schema for text completions: OpenAI streams them as
        # CreateCompletionResponse objects whose finish_reason is null until the last.
        spec = copy.deepcopy(spec)
        choice = spec["components"]["schemas"][name]["properties"]["choices"]["items"]
        choice["properties"]["finish_reason"] = {
            "anyOf": [choice["properties"]["finish_reason"], {"type": "null"}]
        }
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource("urn:openai-spec", resource)
    return Draft202012Validator(
        {"$ref": f"urn:openai-spec#/components/schemas/{name}"}, registry=registry
    )


def validate(name: str, body: Any, stream_completion: bool = False) -> None:
    """Fail the test if `body` does not match the spec's schema `name`."""
    errors = [e.message for e in _validator(name, stream_completion).iter_errors(body)]
    assert not errors, f"{name}: {errors[:3]}\n{body}"


@pytest.fixture
def check_schema() -> Any:
    return validate


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[ServerThread]:
    """The bundled gauge-tiny model behind the transformers engine (loaded once per module)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gauge.serve.engines.transformers import TransformersEngine

    settings = Settings(disable_log_stats=True, disable_log_requests=True)
    engine = TransformersEngine.from_settings(settings)
    server = ServerThread(engine, settings).start()
    yield server
    server.stop()
