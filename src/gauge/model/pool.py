"""Endpoint pools: one model served by several replicas, each its own connection key.

`-M base_url=http://a/v1,http://b/v1` (or a list in a model config file) builds
one provider instance per replica. Each attempt goes to the replica with the
fewest requests in flight or waiting for a slot; each replica keeps its own
connection key (slots, budgets, pause), so a slow or rate-limited replica only
slows itself. A replica that refuses connections is taken out for a while (1 s,
doubling up to 30 s while it keeps refusing) and the attempt moves to another
at once; it comes back when its time is up, and stays in after a success.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gauge.errors import ConfigError
from gauge.model.api import ModelAPI
from gauge.model.rate.keys import ConnectionKey, connection_key
from gauge.model.request import ModelRequest

Clock = Callable[[], float]


class Finder(Protocol):
    """Gives an attempt its connection key (and, in a pool, sets its replica)."""

    def __call__(self, request: ModelRequest | None = None, /) -> ConnectionKey:
        """The key the attempt of `request` goes through."""


def split_urls(base_url: str | Sequence[str] | None) -> list[str] | None:
    """The replicas' base URLs when `base_url` names more than one, else None."""
    if base_url is None:
        return None
    if isinstance(base_url, str):
        if "," not in base_url:
            return None
        urls = [u.strip() for u in base_url.split(",")]
    else:
        urls = [str(u).strip() for u in base_url]
    if not urls or any(not u for u in urls):
        raise ConfigError(
            f"base_url {base_url!r} lists an empty replica; give comma-separated URLs "
            "such as http://a:8000/v1,http://b:8000/v1"
        )
    if len(set(urls)) != len(urls):
        raise ConfigError(f"base_url {base_url!r} lists a replica twice; give each once")
    return urls if len(urls) > 1 else None


def pool_finder(replicas: Sequence[ModelAPI], clock: Clock) -> Finder:
    """Pick each attempt's replica (fewest requests in flight or queued) and its key."""
    entries = [
        (api, api.connection_key(), api.max_connections(), api.max_connections_limit())
        for api in replicas
    ]

    def find(request: ModelRequest | None = None, /) -> ConnectionKey:
        now = clock()
        best: tuple[float, ConnectionKey, ModelAPI] | None = None
        fallback: tuple[float, ConnectionKey, ModelAPI] | None = None
        for api, name, start, most in entries:
            key = connection_key(name, start, clock, most)
            slots = key.slots
            if slots.down_until > now:
                # Out of the pool for now; if every replica is, the one back soonest.
                if fallback is None or slots.down_until < fallback[0]:
                    fallback = (slots.down_until, key, api)
                continue
            load = float(slots.demand)
            if best is None or load < best[0]:
                best = (load, key, api)
        chosen = best or fallback
        assert chosen is not None  # a pool has at least two replicas
        if request is not None:
            request.target = chosen[2]
        return chosen[1]

    return find


def refused(ex: BaseException) -> bool:
    """Whether `ex` (or what caused it) is a refused connection: nothing listens there."""
    seen: set[int] = set()
    current: BaseException | None = ex
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "via_proxy", False):
            return False  # the proxy refused: the replica behind it may be fine
        if isinstance(current, ConnectionRefusedError):
            return True
        os_error = getattr(current, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, ConnectionRefusedError):
            return True
        current = current.__cause__ or current.__context__
    return False
