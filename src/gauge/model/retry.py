"""Bounded retries with exponential backoff and jitter, honouring Retry-After.

Defaults: 5 retries after the first attempt (6 attempts in all), waits of 1 s,
2 s, 4 s, ... (each jittered to 50-100 %) capped at 60 s, and 15 minutes of total
waiting. A provider's `retry_after` replaces the computed wait (capped at
`max_delay` x 5). Fatal errors are raised at once. The error that reaches the
caller is the provider's own exception, with `gauge_attempts` (the history) set
on it and a note added.

Early stop after identical fatal errors: see `gauge.model.rate.stop`.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

from gauge.model.rate.stop import FATAL_STOP


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
