"""How the key stage tells a ConnectionKey about an attempt, for the rate tests."""

from __future__ import annotations

from gauge.model.api import RetryDecision
from gauge.model.output import ModelUsage
from gauge.model.rate.keys import ConnectionKey, Ticket
from gauge.model.rate.window import Entry


def ok(
    s: ConnectionKey,
    reserved: int,
    used: int | None,
    saturated: bool,
    headers: dict[str, str] | None,
    sent_at: float = 0.0,
    usage: ModelUsage | None = None,
    guess: int = 0,
    entry: Entry | None = None,
) -> None:
    """A success, told the way the key stage tells it."""
    if usage is None and used is not None:
        usage = ModelUsage(total_tokens=used)
    s.succeeded(Ticket(reserved, guess, entry, sent_at), usage, headers, saturated)


def fail(
    s: ConnectionKey,
    kind: str,
    retry_after: float | None,
    reserved: int,
    headers: dict[str, str] | None,
    sent_at: float = 0.0,
    entry: Entry | None = None,
) -> bool:
    """A failure, told the way the key stage tells it."""
    decision = RetryDecision(kind, retry_after)  # type: ignore[arg-type]
    return s.failed(Ticket(reserved, 0, entry, sent_at), decision, headers)
