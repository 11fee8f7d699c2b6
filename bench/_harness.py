"""Pieces every benchmark here shares: ports, the mock OpenAI server, fake-server
processes and the closed-loop calls/s + client-CPU measurement."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def wait_for_health(root: str, timeout: float, interval: float = 0.1) -> None:
    """Block until GET `root`/health answers 200 (a server that is up and warm)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


@contextmanager
def tiny_serve_process() -> Iterator[tuple[str, int]]:
    """`gauge serve` on the bundled gauge-tiny in a subprocess: (root URL, pid), once warm."""
    import os

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env.update({"DISABLE_LOG_STATS": "1", "DISABLE_LOG_REQUESTS": "1"})
    cmd = [sys.executable, "-m", "gauge.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(root, timeout=120)
        yield root, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def start_mock_openai_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`python -m gauge.testing.openai_server ARGS` in its own process; (process, base URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gauge.testing.openai_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"mock OpenAI server did not start: {line!r}")
    return process, line.removeprefix("listening on ")


@contextmanager
def server_process(target: Callable[..., Any], *args: Any) -> Iterator[int]:
    """Run `target(port, *args)` (a blocking fake server) in a child process; yield its port."""
    port = free_port()
    server = multiprocessing.Process(target=target, args=(port, *args), daemon=True)
    server.start()
    try:
        wait_for_port(port)
        yield port
    finally:
        server.terminate()
        server.join()


async def measure(
    name: str, call: Callable[[], Awaitable[object]], calls: int, concurrency: int
) -> dict[str, float | str]:
    """Run `calls` calls at `concurrency`; calls/s and this process's CPU ms per call."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    await asyncio.gather(*(worker(10) for _ in range(concurrency)))  # warm the pool
    per_worker = calls // concurrency
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    done = per_worker * concurrency
    return {"name": name, "calls_s": done / wall, "cpu_ms": cpu / done * 1000}
