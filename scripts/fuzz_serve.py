"""Fuzz `gauge serve` (mock engine) with schemathesis against its own OpenAPI document.

    .venv/bin/python scripts/fuzz_serve.py [--max-examples 500] [--seed N] [--engine mock]

Starts `gauge serve --engine mock --api-key ...` as its own process on a free
port of 127.0.0.1, then:

  1. runs `st run <server>/openapi.json --checks all` (schemathesis: every
     operation; examples, coverage and fuzzing phases; no 5xx, responses and
     status codes as documented, valid requests accepted, invalid ones refused,
     unauthenticated ones refused). With `--engine transformers` (the bundled
     gauge-tiny) "valid requests accepted" is left out: a real model also
     refuses what depends on it (its vocabulary, its chat template's roles);
  2. sends the hand-written malformed requests in MALFORMED (bytes that are not
     JSON, wrong types, missing fields, unknown routes and methods, bad keys),
     which a schema-driven fuzzer does not produce, and checks each gets its
     4xx status in OpenAI's error shape {"error": {message, type, param, code}}.

Prints the figures and a last line `RESULT {json}`; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

KEY = "fuzz-key"
MODEL = "mock-model"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "hi"}]

# (name, method, path, raw body or None, headers, expected status)
MALFORMED: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    ("not JSON", "POST", CHAT, b"{model: mock", AUTH | JSON, 400),
    ("empty body", "POST", CHAT, b"", AUTH | JSON, 400),
    ("truncated JSON", "POST", COMPLETIONS, b'{"model": "mock-model", "prompt": "a', AUTH, 400),
    ("not UTF-8", "POST", CHAT, b'{"model": "\xff\xfe"}', AUTH | JSON, 400),
    ("number too large", "POST", CHAT, b'{"model": "m", "n": 1e400}', AUTH | JSON, 400),
    ("JSON array", "POST", CHAT, b"[1, 2]", AUTH | JSON, 400),
    ("JSON string", "POST", COMPLETIONS, b'"hello"', AUTH | JSON, 400),
    ("JSON null", "POST", COMPLETIONS, b"null", AUTH | JSON, 400),
    ("missing messages", "POST", CHAT, json.dumps({"model": MODEL}).encode(), AUTH, 400),
    ("missing model", "POST", CHAT, json.dumps({"messages": MESSAGES}).encode(), AUTH, 400),
    ("missing prompt", "POST", COMPLETIONS, json.dumps({"model": MODEL}).encode(), AUTH, 400),
    (
        "messages is a number",  # a string is valid: the prompt itself (vLLM's first chat API)
        "POST",
        CHAT,
        json.dumps({"model": MODEL, "messages": 7}).encode(),
        AUTH,
        400,
    ),
    (
        "temperature is a string",
        "POST",
        CHAT,
        json.dumps({"model": MODEL, "messages": MESSAGES, "temperature": "hot"}).encode(),
        AUTH,
        400,
    ),
    (
        "n is a boolean",
        "POST",
        COMPLETIONS,
        json.dumps({"model": MODEL, "prompt": "a", "n": True}).encode(),
        AUTH,
        400,
    ),
    (
        "unknown field",
        "POST",
        CHAT,
        json.dumps({"model": MODEL, "messages": MESSAGES, "temprature": 0}).encode(),
        AUTH,
        400,
    ),
    (
        "image part",
        "POST",
        CHAT,
        json.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
            }
        ).encode(),
        AUTH,
        400,
    ),
    (
        "unknown model",
        "POST",
        CHAT,
        json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode(),
        AUTH,
        404,
    ),
    (
        "no key",
        "POST",
        CHAT,
        json.dumps({"model": MODEL, "messages": MESSAGES}).encode(),
        JSON,
        401,
    ),
    (
        "wrong key",
        "POST",
        CHAT,
        json.dumps({"model": MODEL, "messages": MESSAGES}).encode(),
        {"Authorization": "Bearer nope"} | JSON,
        401,
    ),
    ("basic auth", "GET", "/v1/models", None, {"Authorization": "Basic Zm9vOmJhcg=="}, 401),
    ("metrics without key", "GET", "/metrics", None, {}, 401),
    ("unknown route", "POST", "/v1/embeddings", b"{}", AUTH | JSON, 404),
    ("unknown route, GET", "GET", "/v2/models", None, AUTH, 404),
    ("path traversal", "GET", "/v1/../../etc/passwd", None, AUTH, 404),
    ("GET on a POST route", "GET", CHAT, None, AUTH, 405),
    ("DELETE on models", "DELETE", "/v1/models", None, AUTH, 405),
]


def check_malformed(root: str) -> tuple[int, list[str]]:
    """Send every MALFORMED request; (cases sent, failures)."""
    failures = []
    for name, method, path, body, headers, want in MALFORMED:
        status, data = request(root + path, method, body, headers)
        problem = error_shape_problem(data)
        if status != want:
            failures.append(f"{name}: {method} {path} -> {status}, expected {want}: {data[:200]!r}")
        elif problem:
            failures.append(f"{name}: {method} {path} -> {status}: {problem}")
    return len(MALFORMED), failures


def error_shape_problem(data: bytes) -> str | None:
    """Why `data` is not OpenAI's error body, or None when it is."""
    try:
        body = json.loads(data)
    except ValueError:
        return f"not JSON: {data[:120]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"not OpenAI's error shape: {body!r}"
    if not isinstance(error["message"], str) or not error["message"]:
        return "empty error message"
    if "\n" in error["message"] or "Traceback" in error["message"]:
        return f"message is not one line: {error['message']!r}"
    return None


def request(
    url: str, method: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One HTTP request; (status, body), errors included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(engine: str) -> tuple[subprocess.Popen[bytes], str]:
    """`gauge serve --engine ENGINE` on a free port; (process, root URL) once healthy."""
    port = free_port()
    cmd = [sys.executable, "-c", "from gauge.cli.main import main; main()", "serve"]
    cmd += ["--engine", engine, "--port", str(port), "--api-key", KEY]
    if engine == "mock":  # other engines serve their default, the bundled gauge-tiny
        cmd += ["--model", MODEL]
    cmd += ["--disable-log-requests", "1", "--disable-log-stats", "1"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"gauge serve exited {process.returncode}: {err.strip()}")
        try:
            if request(root + "/health", "GET", None, {})[0] == 200:
                return process, root
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("gauge serve did not become healthy in 120 s")


def run_schemathesis(
    root: str, max_examples: int, seed: int | None, engine: str
) -> tuple[int, int, str]:
    """`st run` against the server's document; (exit code, cases generated, output)."""
    st = Path(sys.executable).with_name("st")
    cmd = [str(st), "run", f"{root}/openapi.json", "--checks", "all", "--no-color"]
    if engine != "mock":
        # A real model also refuses, with a 400, what depends on it and the document
        # does not describe: token ids past its vocabulary, roles its chat template
        # lacks, prompts longer than its context.
        cmd += ["--exclude-checks", "positive_data_acceptance"]
    cmd += ["--max-examples", str(max_examples), "-H", f"Authorization: Bearer {KEY}"]
    # A loaded machine must not fail the run: hypothesis' speed health checks off,
    # and a generous per-request timeout (a hung request still fails it).
    cmd += ["--continue-on-failure", "--suppress-health-check", "all", "--request-timeout", "60"]
    if seed is not None:
        cmd += ["--seed", str(seed), "--generation-deterministic"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    found = re.search(r"(\d+) generated", output)
    return done.returncode, int(found.group(1)) if found else 0, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=500, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=None, help="fixed seed: a repeatable run")
    parser.add_argument("--engine", default="mock", help="mock, or transformers (gauge-tiny)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    process, root = start_server(args.engine)
    try:
        code, cases, output = run_schemathesis(root, args.max_examples, args.seed, args.engine)
        sent, malformed_failures = check_malformed(root)
        alive = request(root + "/health", "GET", None, {})[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    if code != 0:
        print(output)
    for failure in malformed_failures:
        print("MALFORMED FAIL", failure)
    result: dict[str, Any] = {
        "schemathesis_cases": cases,
        "schemathesis_exit": code,
        "malformed_cases": sent,
        "malformed_failures": len(malformed_failures),
        "server_alive_after": alive,
        "max_examples": args.max_examples,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - began, 1),
    }
    summary = [line for line in output.splitlines() if "generated" in line or "issues" in line]
    print("\n".join(s.strip() for s in summary))
    print("RESULT " + json.dumps(result))
    ok = code == 0 and not malformed_failures and alive and cases > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
