"""Rate state shared by every process and machine that uses a connection key (Redis).

    from gauge.model import shared

    shared.use("redis://localhost:6379/0")                  # every connection key from now on
    shared.use("redis://localhost:6379/0", fallback="local")  # Redis away at start: warn, go local
    shared.use(None)                                        # back to in-process state
    await shared.close()                                    # leave now (else at loop shutdown)

The same setting: GAUGE_SHARED_STATE=redis://... in the environment, `gauge eval
--shared-state redis://...`, or `eval(..., shared_state="redis://...")`. What is
shared, how, and what happens when Redis goes away: docs/scale.md. The
implementation is in gauge.model.rate (shared*.py); `redis` is imported only
when a setting is in force (pip install 'gauge[redis]').
"""

from __future__ import annotations

from gauge.model.rate.shared import SharedSetting, current, use

__all__ = ["SharedSetting", "close", "current", "use"]


async def close() -> None:
    """Give back this process's concurrency leases on the running event loop and close
    its Redis connections now (asyncio.run's shutdown does it otherwise). Keys already
    made on this loop then run with local state."""
    from gauge.model.rate.shared_link import close_links

    await close_links()
