"""Redis key names of a shared connection key, and the id of this process.

Names are built from a SHA-256 of the connection key string. That string holds
only a fingerprint of the credential, but its base URL may carry credentials of
its own (user:password@host, ?api-key=...): hashing it keeps every secret out
of Redis. The `{...}` hash tag keeps a key's names in one Redis Cluster slot, so
its scripts may touch them all.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
from dataclasses import dataclass

PREFIX = "gauge:v1:"
"""Every name starts with this (v1: the layout of the values below)."""


@dataclass(frozen=True, slots=True)
class KeyNames:
    """The Redis keys of one connection key."""

    state: str
    """Hash: the request budget's schedule (GCRA), the tokens in the window, the
    pause, the concurrency controller, the learned limits and the fatal-error streak."""
    leases: str
    """Sorted set: process id -> when its concurrency lease expires."""
    holders: str
    """Hash: process id -> "held,wanted" concurrency slots."""
    sends: str
    """Hash: "bin|process id" -> successful sends in that bin (rate inference)."""
    window: str
    """Sorted set: "process id|seq|tokens" -> when that send went (the token window)."""

    def all(self) -> list[str]:
        """Every name, in the order the scripts take them."""
        return [self.state, self.leases, self.holders, self.sends, self.window]


def key_names(connection_key: str) -> KeyNames:
    """The Redis names of `connection_key` (provider|base URL|credential fingerprint|model)."""
    digest = hashlib.sha256(connection_key.encode()).hexdigest()[:24]
    base = f"{PREFIX}{{{digest}}}"
    return KeyNames(
        f"{base}:state", f"{base}:leases", f"{base}:holders", f"{base}:sends", f"{base}:window"
    )


def label(connection_key: str) -> str:
    """provider|model of `connection_key`, stored for people reading Redis (no URL)."""
    parts = connection_key.split("|")
    return f"{parts[0]}|{parts[-1]}" if len(parts) > 1 else parts[0]


def process_id() -> str:
    """A new id for one process's part in a key: join time first, so the oldest sorts
    first (it leads the probing of an inferred rate), then host, pid and a nonce."""
    host = socket.gethostname().replace("|", "_").replace(",", "_")[:40]
    return f"{int(time.time() * 1000):015d}:{host}:{os.getpid()}:{secrets.token_hex(3)}"
