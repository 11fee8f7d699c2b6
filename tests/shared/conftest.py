"""Fixtures of the shared-state tests: a fresh redis-server per test (redis_process.py),
and the shared-state setting pointed at it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_process import INSTALL, RedisServer, reset_setting


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server, stopped after the test."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(INSTALL, pytrace=False)
    server = RedisServer(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_on(redis_server: RedisServer) -> Iterator[RedisServer]:
    """Shared state on, through `redis_server`, for this test's keys."""
    from gauge.model.rate import shared

    shared.use(redis_server.url)
    try:
        yield redis_server
    finally:
        reset_setting()
