"""`gauge serve --engine vllm` where vllm cannot be imported (this environment): one line,
before the server binds its port."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from gauge.errors import MissingExtra
from gauge.model.registry import is_importable
from gauge.serve.engines import build_engine
from gauge.serve.settings import load_settings

pytestmark = pytest.mark.skipif(is_importable("vllm"), reason="vllm is installed here")

GAUGE = "import sys; from gauge.cli.main import main; sys.argv[0] = 'gauge'; main()"
NO_VLLM = (
    "error: the vllm engine needs the vllm package: pip install vllm on a CUDA GPU "
    "machine, or use --engine transformers"
)


def test_serve_fails_before_it_binds_its_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The port is in use: had the server bound it first, it would say so instead.
        serve = ["serve", "--engine", "vllm", "--model", "org/m", "--port", str(port)]
        done = subprocess.run(
            [sys.executable, "-c", GAUGE, *serve],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == NO_VLLM
    assert not any("loading" in line or "in use" in line for line in lines), lines
    assert "Traceback" not in done.stderr


def test_the_serverless_worker_fails_as_early() -> None:
    # build_engine is what the CLI and the serverless worker both start from.
    with pytest.raises(MissingExtra, match="pip install vllm on a CUDA GPU machine"):
        build_engine(load_settings({"engine": "vllm", "model_name": "org/m"}, {}))
