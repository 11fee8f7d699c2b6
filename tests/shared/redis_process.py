"""A real redis-server for the shared-state tests (127.0.0.1, a free port, a temp
dir, no persistence), which a test may stop and start again. No fake Redis: the
scripts must run on the real engine. CI installs it with
`apt-get install -y redis-server`."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = (
    "redis-server is not installed: the shared-state tests need a real Redis "
    "(Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis)"
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process that a test may stop and start again on the same port."""

    executable: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self):  # type: ignore[no-untyped-def]
        """A plain (blocking) client, for the test's own looks into Redis."""
        import redis

        return redis.Redis(port=self.port, host="127.0.0.1")


def reset_setting() -> None:
    """Back to the default: no use() call, the environment decides."""
    from gauge.model.rate import shared

    shared._setting, shared._from_env, shared._env_read = None, True, None
