"""A real redis-server for tests and benchmarks: 127.0.0.1, a free port, its own
directory, no persistence; it may be stopped and started again on the same port.

No fake Redis: the shared-state scripts must run on the real engine. A machine
without it gets `RedisMissing`, whose message says how to install it (CI does:
`apt-get install -y redis-server`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

INSTALL = (
    "redis-server is not installed: the shared-state tests and benches need a real "
    "Redis (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis)"
)


class RedisMissing(RuntimeError):
    """No redis-server on PATH."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process in `directory`, listening on 127.0.0.1:`port`."""

    def __init__(self, directory: Path | str, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisMissing(INSTALL)
        self.executable = executable
        self.directory = Path(directory)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The `redis://` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        no_persistence = ("--save", "", "--appendonly", "no", "--dir", str(self.directory))
        self.process = subprocess.Popen(
            [self.executable, "--bind", "127.0.0.1", "--port", str(self.port), *no_persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop it (its data goes with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> Any:
        """A plain blocking client, for a test's own looks into Redis."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)
