"""One event loop's connection to the shared state in Redis, and what happens when it goes.

A `Link` runs the scripts (shared_scripts.py) through the maintained `redis`
client's asyncio API, without its retries: a failed call marks the link down at
once. The keys that use it then go on with local state (each part falls back to
its in-process behaviour), a warning says so once per process, and a background
task pings Redis every RECONNECT_EVERY seconds; when it answers, the keys rejoin.
No request waits on a Redis that does not answer for longer than TIMEOUT.

Links live per event loop, like the connection keys (a connection cannot cross
loops). When the loop shuts down (asyncio.run cancels every task), the link's
keeper task gives back this process's concurrency leases and closes the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gauge.model.rate.shared_scripts import SCRIPTS

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gauge.model.rate.shared import SharedSetting

TIMEOUT = 1.0
"""Seconds a Redis call may take before the link counts as lost."""
RECONNECT_EVERY = 1.0
LEAVE_TIMEOUT = 0.5
"""Seconds spent giving leases back when the loop shuts down (else they expire)."""

log = logging.getLogger("gauge.shared")
_warned = False
"""Whether this process has already warned that the shared state was lost."""


class Member(Protocol):
    """A shared connection key, as its link sees it."""

    def down(self) -> None:
        """The link was lost: go on with local state."""

    def up(self) -> None:
        """The link is back: rejoin."""

    async def leave(self) -> None:
        """Give this process's leases back (the loop is shutting down)."""


class Link:
    """The scripts, the client and the health of one loop's connection to Redis."""

    def __init__(self, setting: SharedSetting) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.setting = setting
        self.client: Redis = Redis.from_url(
            setting.url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.scripts = {name: self.client.register_script(text) for name, text in SCRIPTS.items()}
        self.up = setting.reachable
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._keeper = asyncio.get_running_loop().create_task(self._keep())
        if not self.up:
            self._reconnect()

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """Run script `name`; None when Redis did not answer (the link is then down)."""
        if not self.up:
            return None
        try:
            # The client's own socket timeouts (TIMEOUT) bound the wait: no wait_for,
            # whose extra task would cost every grant fetch.
            return await self.scripts[name](keys=keys, args=args)
        except asyncio.CancelledError:
            raise
        except Exception as ex:  # connection, timeout or server error: go on locally
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A cancel the client's own timeout turned into a timeout error (3.11):
                # still a cancel, not a lost Redis.
                raise asyncio.CancelledError from ex
            self.lost(ex)
            return None

    def lost(self, ex: BaseException) -> None:
        """Redis stopped answering: every member goes local; reconnect in the background."""
        global _warned
        if not self.up or self._closing:
            return
        self.up = False
        if not _warned:
            _warned = True
            log.warning(
                "gauge: shared state at %s lost (%s); going on with local rate state, "
                "reconnecting in the background",
                self.setting.shown,
                _why(ex),
            )
        for member in list(self.members):
            member.down()
        self._reconnect()

    def _reconnect(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():  # a cancel taken for a timeout
                raise asyncio.CancelledError
            await asyncio.sleep(RECONNECT_EVERY)
            try:
                await self.client.ping()  # bounded by the client's socket timeouts
            except asyncio.CancelledError:
                raise
            except Exception:  # still unreachable: try again later
                continue
            self.up = True
            log.info("gauge: shared state at %s is back; sharing again", self.setting.shown)
            for member in list(self.members):
                member.up()
            return

    async def _keep(self) -> None:
        """Wait for the loop to shut down, then leave every key and close the client."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Give back this process's leases (briefly) and close the connection."""
        self._closing = True  # a Redis gone by now is no news worth a warning
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.up:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(LEAVE_TIMEOUT):
                    await asyncio.gather(*(m.leave() for m in list(self.members)))
        self.up = False
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.client.aclose()


def _why(ex: BaseException) -> str:
    text = str(ex).splitlines()[0] if str(ex) else ""
    return f"{type(ex).__name__}: {text}" if text else type(ex).__name__


_links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Link]]
_links = weakref.WeakKeyDictionary()


def link_for(setting: SharedSetting) -> Link:
    """The running loop's link to `setting`'s Redis (made on first use)."""
    loop = asyncio.get_running_loop()
    per_loop = _links.get(loop)
    if per_loop is None:
        per_loop = _links[loop] = {}
    link = per_loop.get(setting.url)
    if link is None or link._keeper.done():
        link = per_loop[setting.url] = Link(setting)
    return link


async def close_links() -> None:
    """Leave every shared key of the running loop and close its links (their keys
    then run with local state; a new loop starts afresh)."""
    loop = asyncio.get_running_loop()
    for link in list(_links.pop(loop, {}).values()):
        for member in list(link.members):
            member.down()
        await link.close()
        link._keeper.cancel()
