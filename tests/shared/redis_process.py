"""The shared-state tests' Redis (gauge.testing.redis_server) and setting reset."""

from __future__ import annotations

from gauge.testing.redis_server import INSTALL, RedisMissing, RedisServer, free_port

__all__ = ["INSTALL", "RedisMissing", "RedisServer", "free_port", "reset_setting"]


def reset_setting() -> None:
    """Back to the default: no use() call, the environment decides."""
    from gauge.model.rate import shared

    shared._setting, shared._from_env, shared._env_read = None, True, None
