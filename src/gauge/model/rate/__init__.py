"""Rate control per connection key: adaptive concurrency, RPM/TPM budgets, pauses.

    adaptive.py  the concurrency controller (slow start, additive growth, cut on 429)
    buckets.py   token buckets for requests and tokens, reserve then reconcile
    window.py    a mirror of the provider's token window (tokens sent in the last second)
    calibration.py  what a request really costs in tokens, learned from the replies
    headers.py   limits learned from x-ratelimit-* response headers
    inference.py without headers: the request rate measured from 429s, then probed upward
    keys.py      one KeyState per connection key: the above, a key-wide pause, counters
    stage.py     the pipeline stage that puts them in front of every attempt
    sink.py      how the shared HTTP client hands response headers to the stage

`key_stats()` lists what every key is doing (concurrency, in flight, rate-limit
hits, tokens per minute); the eval runner shows it live and saves it in its log.
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
