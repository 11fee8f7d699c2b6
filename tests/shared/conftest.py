"""Fixtures of the shared-state tests: a fresh redis-server per test (redis_process.py),
and the shared-state setting pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_process import RedisMissing, RedisServer, reset_setting


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server, stopped after the test."""
    try:
        server = RedisServer(tmp_path)
    except RedisMissing as ex:
        pytest.fail(str(ex), pytrace=False)
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
