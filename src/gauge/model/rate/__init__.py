"""Rate control per connection key: adaptive concurrency, RPM/TPM budgets, pauses.

    keys.py      one ConnectionKey per connection key, composed of the parts below
    slots.py     connection slots: a limiter resized by adaptive.py's controller
                 (slow start, additive growth, cut on 429)
    budgets.py   request and token budgets: buckets.py (reserve, then reconcile),
                 window.py (a mirror of the provider's token window) and
                 calibration.py (what a request really costs, learned from replies)
    pause.py     the key-wide pause (Retry-After, a budget used up)
    stop.py      the early stop after identical fatal errors
    inference.py without headers: the request rate measured from 429s, then probed upward
    headers.py   limits read from x-ratelimit-* response headers
    counters.py  what the key did, and why it last slowed down
    stage.py     the pipeline stage that puts the key in front of every attempt

`key_stats()` lists what every key is doing (concurrency, in flight, rate-limit
hits, tokens per minute, why it slowed down); the eval runner shows it live and saves it in its log.
"""

from __future__ import annotations

from typing import Any


def key_stats() -> list[dict[str, Any]]:
    """Current state of every connection key used in the running event loop.

    Outside an event loop: every key of every loop still alive.
    """
    from gauge.model.rate.keys import all_stats

    return all_stats()


__all__ = ["key_stats"]
