"""`gauge serve` as a subprocess: start-up notes, readiness line, bad settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from gauge.cli.main import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_settings(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        main(["serve", "--help"])
    except SystemExit as ex:
        assert not ex.code
    out = capsys.readouterr().out
    for flag in ("--engine", "--model", "--max-model-len", "--api-key", "--enforce-eager"):
        assert flag in out


def test_invalid_environment_value_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_MODEL_LEN", "lots")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--engine", "mock"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: MAX_MODEL_LEN='lots' is not valid: use an integer\n"


def test_serves_mock_engine_and_lists_unused_settings() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env.update({"ENFORCE_EAGER": "1", "DISABLE_LOG_STATS": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gauge.cli.main", "serve", "--engine", "mock", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if line.startswith("serving"):
                break
        assert "note: the mock engine does not use: ENFORCE_EAGER\n" in lines
        assert lines[-1] == f"serving gauge-tiny (mock) at http://127.0.0.1:{port}/v1\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as reply:
            assert orjson.loads(reply.read())["status"] == "ready"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


def test_engine_that_fails_to_load_stops_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gauge.cli.main",
            "serve",
            "--model",
            str(tmp_path),
            "--port",
            str(free_port()),
            "--disable-log-stats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the transformers engine failed to start: cannot load hf model")
