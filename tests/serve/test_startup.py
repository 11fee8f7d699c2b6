"""`gauge serve` start-up: the settings banner, the generic names, and the bind errors.

The banner lists every setting given and where it came from; a bare HOST, PORT or
API_KEY is never read (a stray one that would have moved the server stops start-up,
one that could not matter is noted); a taken port, an address that is not this
machine's and a host name that does not resolve each end in one line, before any
model loads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gauge.cli.main import main
from gauge.errors import ConfigError
from gauge.serve.settings import banner, check_generic, env_var, load_settings

STRAYS = ("HOST", "PORT", "API_KEY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests below set exactly the variables they mean.
    for name in (*STRAYS, "ENGINE", "MODEL_NAME", *(env_var(n) for n in ("host", "port"))):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GAUGE_SERVE_API_KEY", raising=False)


def _serve(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    with pytest.raises(SystemExit) as info:
        main(["serve", *argv])
    return info.value.code, capsys.readouterr().err


# -- the banner -------------------------------------------------------------------------


def test_banner_lists_each_setting_given_and_where_it_came_from() -> None:
    env = {"MAX_MODEL_LEN": "64", "HF_TOKEN": "hf_secret", "GAUGE_SERVE_PORT": "9001"}
    s = load_settings({"engine": "mock", "seed": "7", "port": None}, env)
    lines = banner(s)
    assert lines[0] == "settings (a flag wins over its environment variable):"
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[1:]}
    assert rows == {
        "ENGINE=mock": "from --engine",
        "MODEL_NAME=gauge-tiny": "default",
        "GAUGE_SERVE_HOST=127.0.0.1": "default",
        "GAUGE_SERVE_PORT=9001": "from the environment",
        "GAUGE_SERVE_API_KEY=(unset:": "no auth)  default",
        "MAX_MODEL_LEN=64": "from the environment",
        "HF_TOKEN=****": "from the environment",
        "SEED=7": "from --seed",
    }
    assert "hf_secret" not in "\n".join(lines)


def test_banner_shows_a_key_as_stars_and_warns_when_exposed_without_one() -> None:
    keyed = banner(load_settings({"api_key": "sk-very-secret"}, {}))
    assert any(
        line.split()[:3] == ["GAUGE_SERVE_API_KEY=****", "from", "--api-key"] for line in keyed
    )
    assert "sk-very-secret" not in "\n".join(keyed)
    exposed = banner(load_settings({"host": "0.0.0.0"}, {}))
    assert exposed[-1] == (
        "warning: 0.0.0.0 takes connections from other machines and no API key is set: "
        "anyone who reaches port 8088 can use the model (set --api-key or GAUGE_SERVE_API_KEY)"
    )
    assert not any(line.startswith("warning") for line in banner(load_settings({}, {})))


def test_the_worker_banner_leaves_out_the_server_only_settings() -> None:
    lines = banner(load_settings({}, {"MODEL_NAME": "org/m"}), always=("engine", "model_name"))
    assert [line.split()[0] for line in lines[1:]] == ["ENGINE=transformers", "MODEL_NAME=org/m"]


# -- the generic names: never read ------------------------------------------------------


def test_a_stray_api_key_never_turns_auth_on() -> None:
    env = {"API_KEY": "sk-from-another-tool"}
    s = load_settings({}, env)
    assert s.api_key is None
    assert check_generic(s, env) == [
        "note: API_KEY in the environment is not read; gauge serve uses --api-key or "
        "GAUGE_SERVE_API_KEY"
    ]
    assert load_settings({}, {"GAUGE_SERVE_API_KEY": "sk-mine"}).api_key == "sk-mine"


def test_a_stray_host_that_would_move_the_server_stops_start_up() -> None:
    env = {"HOST": "0.0.0.0"}
    with pytest.raises(ConfigError) as info:
        check_generic(load_settings({}, env), env)
    assert str(info.value) == (
        "HOST='0.0.0.0' is in the environment, but gauge serve reads GAUGE_SERVE_HOST, not "
        "HOST: to serve on 0.0.0.0 use --host 0.0.0.0 (or GAUGE_SERVE_HOST=0.0.0.0); to keep "
        "127.0.0.1, unset HOST or pass --host 127.0.0.1"
    )


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({"HOST": "myhost"}, {"host": "127.0.0.1"}),  # the flag says what is meant
        ({"HOST": "myhost", "GAUGE_SERVE_HOST": "127.0.0.1"}, {}),
        ({"HOST": "127.0.0.1"}, {}),  # the same as the setting: nothing moves
        ({"PORT": "8088"}, {}),
    ],
)
def test_a_stray_host_or_port_that_changes_nothing_is_only_noted(
    env: dict[str, str], flags: dict[str, str]
) -> None:
    s = load_settings(flags, env)
    assert s.host == "127.0.0.1" and s.port == 8088
    [note] = check_generic(s, env)
    assert note.startswith("note: ") and "is not read" in note


def test_a_stray_port_stops_start_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "3000")
    code, err = _serve(["--engine", "mock"], capsys)
    assert code == 2
    assert err.splitlines()[-1] == (
        "error: PORT='3000' is in the environment, but gauge serve reads GAUGE_SERVE_PORT, "
        "not PORT: to serve on 3000 use --port 3000 (or GAUGE_SERVE_PORT=3000); to keep 8088, "
        "unset PORT or pass --port 8088"
    )
    assert "Traceback" not in err


# -- bind errors: one line each, before the model loads ----------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_one_line(busy_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _serve(["--engine", "mock", "--port", str(busy_port)], capsys)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"error: port {busy_port} (from --port) is already in use on 127.0.0.1: stop the "
        "program listening there (another gauge serve?) or pick a free port with --port N"
    )
    assert "loading" not in err  # refused before the engine was asked to load anything


def test_a_port_in_use_names_the_variable_it_came_from(
    busy_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAUGE_SERVE_PORT", str(busy_port))
    code, err = _serve(["--engine", "mock"], capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith(
        f"error: port {busy_port} (from GAUGE_SERVE_PORT) is already in use on 127.0.0.1"
    )


def _nonlocal_bind_allowed() -> bool:
    path = Path("/proc/sys/net/ipv4/ip_nonlocal_bind")
    return path.is_file() and path.read_text().strip() == "1"


@pytest.mark.skipif(_nonlocal_bind_allowed(), reason="this kernel binds any address")
def test_an_address_not_on_this_machine_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # 192.0.2.0/24 is TEST-NET-1 (documentation only): no machine has it. Nothing is sent.
    code, err = _serve(["--engine", "mock", "--host", "192.0.2.1", "--port", "8089"], capsys)
    assert code == 2
    assert err.splitlines()[-1] == (
        "error: cannot listen on 192.0.2.1 (from --host): it is not an address of this "
        "machine; use --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    )


def test_a_host_name_that_does_not_resolve_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAUGE_SERVE_HOST", "nosuch.invalid")
    code, err = _serve(["--engine", "mock"], capsys)
    assert code == 2
    assert err.splitlines()[-1] == (
        "error: cannot listen on 'nosuch.invalid' (from GAUGE_SERVE_HOST): no such address or "
        "host name here; use --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    )


# -- a real server, in a subprocess ------------------------------------------------------


def test_serve_prints_the_banner_and_a_stray_api_key_leaves_auth_off() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    for name in (*STRAYS, "ENGINE", "MODEL_NAME"):
        env.pop(name, None)
    env.update({"API_KEY": "sk-stray", "MAX_MODEL_LEN": "64", "DISABLE_LOG_STATS": "1"})
    command = [sys.executable, "-m", "gauge.cli.main", "serve", "--engine", "mock"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("serving")):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        assert lines[-1] == f"serving gauge-tiny (mock) at http://127.0.0.1:{port}/v1", lines
        assert lines[0] == "settings (a flag wins over its environment variable):"
        rows = [line.split() for line in lines if line.startswith("  ")]
        assert ["ENGINE=mock", "from", "--engine"] in rows
        assert [f"GAUGE_SERVE_PORT={port}", "from", "--port"] in rows
        assert ["MAX_MODEL_LEN=64", "from", "the", "environment"] in rows
        assert ["GAUGE_SERVE_API_KEY=(unset:", "no", "auth)", "default"] in rows
        assert (
            "note: API_KEY in the environment is not read; gauge serve uses --api-key or "
            "GAUGE_SERVE_API_KEY"
        ) in lines
        assert not any("sk-stray" in line for line in lines)
        # No key needed: the stray API_KEY did not turn auth on.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as reply:
            assert orjson.loads(reply.read())["data"][0]["id"] == "gauge-tiny"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


def test_serve_with_a_key_from_its_own_variable_requires_it() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    for name in (*STRAYS, "ENGINE", "MODEL_NAME"):
        env.pop(name, None)
    env.update({"GAUGE_SERVE_API_KEY": "sk-mine", "DISABLE_LOG_STATS": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gauge.cli.main", "serve", "--engine", "mock", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if not line or line.startswith("serving"):
                break
        assert any(
            line.split()[:4] == ["GAUGE_SERVE_API_KEY=****", "from", "the", "environment"]
            for line in seen
        ), seen
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10)
        assert info.value.code == 401
        info.value.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()
