"""Bounded retries with exponential backoff and jitter, honouring Retry-After.

Defaults: 5 retries after the first attempt (6 attempts in all), waits of 1 s,
2 s, 4 s, ... (each jittered to 50-100 %) capped at 60 s, and 15 minutes of total
waiting. A provider's `retry_after` replaces the computed wait (capped at
`max_delay` x 5). Fatal errors are raised at once. The error that reaches the
caller is the provider's own exception, with `gauge_attempts` (the history) set
on it and a note added.

Early stop: after `fatal_stop` (default 3) identical fatal errors in a row on one
connection key (same type, status and message: a bad API key's 401, a wrong
model name's 404), the key is stopped. Every later request on it fails at once
with a copy of that error, without reaching the provider, for `STOP_SECONDS`
(60 s); then requests go through again and one more identical error stops it
again. A success (of a request already in flight) clears it. See `FatalStop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gauge.model.api import RetryDecision
from gauge.model.rate.keys import public_key

FATAL_STOP = 3
"""Identical fatal errors in a row after which a connection key is stopped."""
REQUEST_SPECIFIC = frozenset({400, 413, 422})
"""Statuses that fault one request's content, not the key: a content filter or a
too-long prompt answers many prompts with the very same message, yet the next
prompt may pass. They never stop a key (and prove it works, like a success)."""
STOP_SECONDS = 60.0
"""How long a stopped key fails requests at once before it tries the provider again
(a long-lived process, e.g. a notebook, may outlive the cause)."""


@dataclass(slots=True)
class RetryPolicy:
    """How failed attempts are retried."""

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 900.0
    fatal_stop: int = FATAL_STOP
    """Identical fatal errors in a row that stop a connection key (0: never stop)."""
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay * 5) * (1 + 0.1 * self.rng.random())
        wait = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return wait * (0.5 + 0.5 * self.rng.random())


@dataclass(slots=True)
class Attempt:
    """One failed attempt, kept in the history attached to the final error."""

    number: int
    error: str
    kind: str
    seconds: float
    wait: float | None = None
    stopped: bool = False
    """The key was stopped (`FatalStop`): this attempt never reached the provider."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for logs."""
        out = {
            "attempt": self.number,
            "error": self.error,
            "kind": self.kind,
            "seconds": round(self.seconds, 4),
            "wait": None if self.wait is None else round(self.wait, 4),
        }
        if self.stopped:
            out["stopped"] = True
        return out


def describe(ex: BaseException) -> str:
    """`Type: message` on one line, for attempt histories."""
    text = str(ex).strip().splitlines()
    return f"{type(ex).__name__}: {text[0]}" if text else type(ex).__name__


def attach_history(ex: BaseException, attempts: list[Attempt]) -> None:
    """Record the attempt history on the exception the caller will see."""
    # Exceptions with __slots__ cannot take attributes; the note still carries it.
    with contextlib.suppress(AttributeError):
        ex.gauge_attempts = [a.as_dict() for a in attempts]  # type: ignore[attr-defined]
    if len(attempts) > 1:
        ex.add_note(
            f"gauge: gave up after {len(attempts)} attempts: "
            + "; ".join(f"#{a.number} {a.kind} {a.error}" for a in attempts)
        )


class FatalStop:
    """Identical fatal errors in a row on one connection key; stops the key at a limit.

    A fatal error that repeats word for word (a 401 for a bad key, a 404 for a
    model that does not exist) will come back for every request: sending the rest
    only burns time and the provider's patience. The count is of consecutive
    identical fatal errors: a different fatal error starts it again at one, a
    success clears it (and lifts a stop), and so does an error that faults the
    request rather than the key (status 400, 413, 422: see REQUEST_SPECIFIC);
    rate limits and transient errors leave it as it is.
    """

    __slots__ = ("clock", "count", "error", "key", "signature", "until")

    def __init__(self, key: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.key = key
        self.clock = clock
        self.count = 0
        self.signature: tuple[str, object, str] | None = None
        self.error: BaseException | None = None
        """The error that stopped the key (None: not stopped)."""
        self.until = 0.0

    def holds(self) -> bool:
        """Whether the key is stopped now (the pipeline checks `error` first, cheaply)."""
        if self.error is None:
            return False
        if self.clock() < self.until:
            return True
        # Time to try the provider again; the streak is kept, so one more
        # identical error stops the key at once.
        self.error = None
        return False

    def failed(self, ex: BaseException, decision: RetryDecision, limit: int) -> bool:
        """Count a failed attempt; True when `ex` is a replay of the stop (not counted)."""
        if getattr(ex, "gauge_key_stopped", None) is not None:
            return True
        if decision.kind != "fatal":
            return False
        signature = _signature(ex)
        if signature[1] in REQUEST_SPECIFIC:
            self.succeeded()
            return False
        if signature == self.signature:
            self.count += 1
        else:
            self.signature, self.count = signature, 1
        if limit > 0 and self.count >= limit and self.error is None:
            self.error = ex
            self.until = self.clock() + STOP_SECONDS
        return False

    def succeeded(self) -> None:
        """A request got through: the key works, forget the streak."""
        self.count = 0
        self.signature = None
        self.error = None

    def replay(self) -> BaseException:
        """A fresh copy of the error that stopped the key, with a note saying so."""
        error = self.error
        if error is None:
            raise RuntimeError("replay() on a key that is not stopped")
        clone = _copy_error(error)
        with contextlib.suppress(AttributeError):  # slotted types keep only the note
            clone.gauge_key_stopped = self.count  # type: ignore[attr-defined]
        clone.add_note(
            f"gauge: connection key {public_key(self.key)} stopped after {self.count} "
            "identical fatal errors; later requests on it fail at once without reaching the "
            "provider (fix the cause, or set retry_policy.fatal_stop=0 to turn this off)"
        )
        return clone


def _signature(ex: BaseException) -> tuple[str, object, str]:
    status = getattr(ex, "status", None)
    if status is None:
        status = getattr(ex, "status_code", None)
    return f"{type(ex).__module__}.{type(ex).__qualname__}", status, str(ex)


def _copy_error(ex: BaseException) -> BaseException:
    """The same type, arguments and attributes as `ex`, without its history or notes.

    Built with __new__ because exception classes often take other arguments in
    __init__ than they keep in `args`. A fresh object per request: one exception
    shared by many tasks would pile up their tracebacks and notes.
    """
    cls = type(ex)
    try:
        clone = cls.__new__(cls, *ex.args)
        clone.args = ex.args
        attributes = dict(getattr(ex, "__dict__", {}))
        attributes.pop("__notes__", None)
        attributes.pop("gauge_attempts", None)
        clone.__dict__.update(attributes)
        clone.gauge_key_stopped = 0  # type: ignore[attr-defined]
    except Exception:  # exotic exception types (slots, odd __new__): keep the original
        return ex
    clone.__cause__ = ex.__cause__
    return clone


_guards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, FatalStop]]
_guards = weakref.WeakKeyDictionary()


def fatal_stop(key: str) -> FatalStop:
    """The running event loop's FatalStop for connection key `key` (created on first use)."""
    loop = asyncio.get_running_loop()
    per_loop = _guards.get(loop)
    if per_loop is None:
        per_loop = _guards[loop] = {}
    guard = per_loop.get(key)
    if guard is None:
        guard = per_loop[key] = FatalStop(key)
    return guard
