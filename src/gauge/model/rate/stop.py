"""A connection key's early stop after identical fatal errors.

After `FATAL_STOP` (default 3) identical fatal errors in a row on one connection
key (same type, status and message: a bad API key's 401, a wrong model name's
404), the key is stopped. Every later request on it fails at once with a copy of
that error, without reaching the provider, for `STOP_SECONDS` (60 s); then
requests go through again and one more identical error stops it again. A
success (of a request already in flight) clears it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from gauge.model.api import RetryDecision
from gauge.model.rate.label import public_key

FATAL_STOP = 3
"""Identical fatal errors in a row after which a connection key is stopped."""
REQUEST_SPECIFIC = frozenset({400, 413, 422})
"""Statuses that fault one request's content, not the key: a content filter or a
too-long prompt answers many prompts with the very same message, yet the next
prompt may pass. They never stop a key (and prove it works, like a success)."""
STOP_SECONDS = 60.0
"""How long a stopped key fails requests at once before it tries the provider again
(a long-lived process, e.g. a notebook, may outlive the cause)."""


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
