"""Secret canaries: keys in every channel reach the server, and nothing else.

Each `gauge eval` runs as its own process against the mock server on 127.0.0.1,
with the response cache on. Canaries sit in API-key env vars (OPENAI_API_KEY and
a service key), a .env file, `-M api_key=`, a credential `-M` argument that is
not the key (refused before any request: it never reaches a body), extra
headers (--extra-headers and a --model-config file) and URL credentials.
Runs take the success path (200) and failure paths (401 and 500 answers that
echo the secrets back, as careless servers do). Afterwards the journals, the
HTML report, the cache database (with its WAL), `gauge cache list/size` and every
command's stdout and stderr are searched as raw bytes for each canary, its base64 and URL-encoded
forms, and the base64 Basic credentials. Every canary must also have reached
the server where it belongs, so the test cannot pass by not sending them.
tests/cli/test_eval_redaction.py checks the masked journal fields in process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from gauge.testing import OpenAIServer

# Distinct values with characters that change under URL and base64 encoding.
CANARY = {
    "env": "sk-envCanary+7d1e/0f",
    "service_env": "svcCanary+55ab/12",
    "dotenv": "sk-dotenvCanary+99c0/de",
    "m_api_key": "sk-mKeyCanary+31f4/aa",
    "m_body_arg": "bodyCanary+a1b2/c3",
    "extra_header": "hdrCanary+e5f6/07",
    "config_header": "cfgCanary+0a0b/0c",
    "url_password": "urlCanary+8812/pw",
    "fail_env": "sk-failCanary+4c4c/4c",
}

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def canary() -> Task:
    return Task([Sample(input=f"alpha q{i}", target=f"alpha q{i}", id=i) for i in range(2)],
                scorer=match(location="exact"))
"""


def forms(secret: str) -> dict[str, bytes]:
    """Every spelling of `secret` that must not appear."""
    raw = secret.encode()
    return {
        "raw": raw,
        "url": quote(secret, safe="").encode(),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "basic": base64.b64encode(b"user:" + raw).rstrip(b"="),
        "urlsafe_base64": base64.urlsafe_b64encode(raw).rstrip(b"="),
    }


@dataclass
class Run:
    """One `gauge eval` (or `gauge view`) process and what it printed."""

    args: list[str]
    code: int = 0
    out: bytes = b""
    err: bytes = b""
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def place(tmp_path: Path) -> Path:
    (tmp_path / "canary.py").write_text(TASK)
    return tmp_path


def gauge_env(root: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GAUGE_") and not k.endswith(("_API_KEY", "_BASE_URL"))
    }
    env.update(
        {"GAUGE_CACHE_DIR": str(root / "cache"), "HOME": str(root), "XDG_CACHE_HOME": str(root)}
    )
    env.update(extra)
    return env


async def gauge(root: Path, cwd: Path, args: list[str], env: dict[str, str]) -> Run:
    cwd.mkdir(exist_ok=True)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gauge.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
    )
    return Run(args, proc.returncode, proc.stdout, proc.stderr, env)


def eval_args(root: Path, *extra: str) -> list[str]:
    return [
        "eval",
        str(root / "canary.py"),
        "--log-dir",
        str(root / "logs"),
        "--cache",
        "--max-retries",
        "0",
        "--no-display",
        *extra,
    ]


async def test_canaries_reach_the_server_and_nothing_else(place: Path) -> None:
    root = place
    runs: list[Run] = []
    received: dict[str, list[dict[str, str]]] = {}
    bodies: dict[str, list[object]] = {}

    async def serve(name: str, script: list[tuple[int, str]] | None = None) -> OpenAIServer:
        server = OpenAIServer()
        for status, message in script or []:
            server.script(status=status, json={"error": {"message": message, "type": "x"}})
        await server.start()
        return server

    async def finish(name: str, server: OpenAIServer) -> None:
        await server.stop()
        received[name] = [r.headers for r in server.requests]
        bodies[name] = [r.body for r in server.requests]

    # A: success; key from OPENAI_API_KEY and an extra header.
    server = await serve("A")
    runs.append(
        await gauge(
            root,
            root / "a",
            eval_args(
                root,
                "-m",
                "openai/mock-model",
                "--extra-headers",
                json.dumps({"X-Api-Key": CANARY["extra_header"], "X-Trace": "t1"}),
            ),
            gauge_env(root, OPENAI_API_KEY=CANARY["env"], OPENAI_BASE_URL=server.url),
        )
    )
    await finish("A", server)

    # B: success; openai-api service key from the env, headers from a --model-config file.
    server = await serve("B")
    model_config = root / "model.yaml"
    model_config.write_text(
        "config:\n  extra_headers:\n    X-Auth-Token: " + json.dumps(CANARY["config_header"]) + "\n"
    )
    runs.append(
        await gauge(
            root,
            root / "b",
            eval_args(root, "-m", "openai-api/mock/m", "--model-config", str(model_config)),
            gauge_env(root, MOCK_API_KEY=CANARY["service_env"], MOCK_BASE_URL=server.url),
        )
    )
    await finish("B", server)

    # C: success; the key comes from a .env file in the working directory.
    server = await serve("C")
    (root / "c").mkdir()
    (root / "c" / ".env").write_text(f'OPENAI_API_KEY="{CANARY["dotenv"]}"\n')
    runs.append(
        await gauge(
            root,
            root / "c",
            eval_args(root, "-m", "openai/mock-model", "--model-base-url", server.url),
            gauge_env(root),
        )
    )
    await finish("C", server)

    # D: success; -M api_key= and credentials in the base URL (sent as Basic auth).
    server = await serve("D")
    password = quote(CANARY["url_password"], safe="")
    url = server.url.replace("http://", f"http://user:{password}@")
    runs.append(
        await gauge(
            root,
            root / "d",
            eval_args(root, "-m", "openai-api/mock/m", "--model-base-url", url),
            gauge_env(root),
        )
    )
    await finish("D", server)
    basic = base64.b64encode(f"user:{CANARY['url_password']}".encode()).decode()
    server = await serve("D2")
    runs.append(
        await gauge(
            root,
            root / "d2",
            eval_args(
                root,
                "-m",
                "openai/mock-model",
                "-M",
                f"api_key={CANARY['m_api_key']}",
                "--model-base-url",
                server.url,
            ),
            gauge_env(root),
        )
    )
    await finish("D2", server)

    # E: failure; the server answers 401 and echoes the key, as a careless server might.
    echo = f"Incorrect API key provided: {CANARY['fail_env']}"
    server = await serve("E", [(401, echo), (401, echo)])
    runs.append(
        await gauge(
            root,
            root / "e",
            eval_args(root, "-m", "openai/mock-model", "--max-errors", "5"),
            gauge_env(root, OPENAI_API_KEY=CANARY["fail_env"], OPENAI_BASE_URL=server.url),
        )
    )
    await finish("E", server)

    # F: failure; 500s echoing the secrets it was sent (headers, body, URL, Basic auth);
    # the run stops at the first error (--max-errors 0), so the error path prints the cause.
    # (An API key and URL credentials cannot be combined: aiohttp refuses; see the report.)
    server = await serve("F")
    url_f = server.url.replace("http://", f"http://user:{password}@")
    secrets_echo = " ".join([CANARY["extra_header"], url_f, f"Authorization: Basic {basic}"])
    for _ in range(2):
        server.script(status=500, json={"error": {"message": f"failed for {secrets_echo}"}})
    runs.append(
        await gauge(
            root,
            root / "f",
            eval_args(
                root,
                "-m",
                "openai-api/mock/m",
                "--extra-headers",
                json.dumps({"X-Api-Key": CANARY["extra_header"]}),
                "--model-base-url",
                url_f,
                "--max-connections",
                "1",
            ),
            gauge_env(root),
        )
    )
    await finish("F", server)

    # The HTML report of every journal.
    journals = sorted((root / "logs").glob("*.jsonl"))
    report = root / "report.html"
    runs.append(await gauge(root, root, ["view", *map(str, journals), "-o", str(report)], {}))
    # What the cache commands print about the stored entries.
    runs.append(await gauge(root, root, ["cache", "list"], gauge_env(root)))
    runs.append(await gauge(root, root, ["cache", "size"], gauge_env(root)))

    # G: refused; a credential given as -M that is not the key never reaches a request
    # body: the run stops before any request, and its error does not print the value.
    server = await serve("G")
    g_args = ["-m", "openai/mock-model", "-M", f"client_secret={CANARY['m_body_arg']}"]
    runs.append(
        await gauge(
            root,
            root / "g",
            eval_args(root, *g_args, "--model-base-url", server.url),
            gauge_env(root, OPENAI_API_KEY=CANARY["env"]),
        )
    )
    await finish("G", server)

    # -- the canaries reached the server -------------------------------------------------------
    successes = [r.code for r in runs[:5]]
    assert successes == [0, 0, 0, 0, 0], [(r.args, r.err.decode()) for r in runs[:5]]
    assert runs[5].code == 0  # E: both samples failed, within --max-errors 5
    assert runs[6].code != 0, runs[6].out  # F: stopped at the first error
    assert runs[7].code == runs[8].code == runs[9].code == 0, runs[7].err + runs[8].err
    assert b"mock-model" in runs[8].out  # the cache listing names the models it holds
    assert all(h["authorization"] == f"Bearer {CANARY['env']}" for h in received["A"])
    assert all(h["x-api-key"] == CANARY["extra_header"] for h in received["A"])
    assert runs[10].code == 2 and received["G"] == []
    assert b"-M client_secret is a credential provider 'openai' does not read" in runs[10].err
    assert not any("client_secret" in b for b in bodies["A"])  # type: ignore[operator]
    assert all(h["authorization"] == f"Bearer {CANARY['service_env']}" for h in received["B"])
    assert all(h["x-auth-token"] == CANARY["config_header"] for h in received["B"])
    assert all(h["authorization"] == f"Bearer {CANARY['dotenv']}" for h in received["C"])
    assert all(h["authorization"] == f"Basic {basic}" for h in received["D"])
    assert all(h["authorization"] == f"Basic {basic}" for h in received["F"])
    assert all(h["authorization"] == f"Bearer {CANARY['m_api_key']}" for h in received["D2"])
    assert all(h["authorization"] == f"Bearer {CANARY['fail_env']}" for h in received["E"])
    for name in "ABCDE":
        assert len(received[name]) == 2, name  # one request per sample (cache was empty)
    assert len(received["F"]) >= 1

    # -- and nothing else ---------------------------------------------------------------------
    places: dict[str, bytes] = {f"journal {p.name}": p.read_bytes() for p in journals}
    places["report.html"] = report.read_bytes()
    cache_files = sorted((root / "cache").iterdir())
    assert any(p.name.endswith(".sqlite3") for p in cache_files), cache_files
    places.update({f"cache {p.name}": p.read_bytes() for p in cache_files})
    with sqlite3.connect(root / "cache" / "responses.sqlite3") as db:
        [(entries,)] = db.execute("select count(*) from entries").fetchall()
    assert entries == 10  # A, B, C, D and D2 stored both samples' answers
    for i, run in enumerate(runs):
        places[f"run {i} stdout"] = run.out
        places[f"run {i} stderr"] = run.err
    assert len(journals) == 7  # F's journal is kept too
    leaks = [
        (secret, form, where)
        for secret, value in CANARY.items()
        for form, needle in forms(value).items()
        for where, data in places.items()
        if needle in data
    ]
    assert leaks == [], "\n".join(map(str, leaks))
    # The runs did record and print something about what went wrong.
    assert b"0/2 (2 err)" in runs[5].out
    assert b"HTTP 500" in runs[6].out + runs[6].err
    assert b"HTTP 401: Incorrect API key provided: ********" in b"".join(places.values())
    assert b"failed for ******** http://********@" in runs[6].err
