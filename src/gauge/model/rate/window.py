"""A mirror of the provider's token window: the tokens the key sent in the last second.

Providers enforce a tokens-per-minute limit over short windows and reject a
request that would take the window past its share (limit / 60 per second). A
token bucket paces the average, but its refunds (a reply that used less than it
reserved) come back while the provider's window still holds the request, so
over one second it can let through more than the window's share. This mirror
closes that gap: a request goes only when the tokens sent within the last
`span` seconds plus its own fit under the window's share. Each send is counted
at its reservation until its reply reports the real usage (or a 429 says the
provider did not count it at all).
"""

from __future__ import annotations

from collections import deque

Entry = list[float]
"""[sent at, tokens counted]: mutable, so a reply can settle its own entry."""


class TokenWindow:
    """Tokens sent in the last `span` seconds, per send."""

    __slots__ = ("_entries", "span", "total")

    def __init__(self, span: float = 1.0, slack: float = 0.0) -> None:
        # An entry is kept `slack` seconds past the span: the provider starts its
        # clock when the request arrives, a little after we counted the send.
        self.span = span + slack
        self.total = 0.0
        self._entries: deque[Entry] = deque()

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0][0] <= now - self.span:
            self.total -= entries.popleft()[1]
        if not entries:
            self.total = 0.0  # no float drift once the window is empty

    def wait(self, tokens: float, share: float, now: float) -> float:
        """Seconds until `tokens` more fit under `share` (0: now).

        An empty window always has room, even for a request larger than the
        share: it could never go otherwise.
        """
        self._expire(now)
        excess = self.total + tokens - share
        if excess <= 0 or not self._entries:
            return 0.0
        freed = 0.0
        for at, counted in self._entries:
            freed += counted
            if freed >= excess:
                return max(at + self.span - now, 0.0)
        return max(self._entries[-1][0] + self.span - now, 0.0)

    def add(self, tokens: float, at: float) -> Entry:
        """Count a send of `tokens` at time `at` (not before the last one)."""
        entry = [at, float(tokens)]
        self._entries.append(entry)
        self.total += tokens
        return entry

    def settle(self, entry: Entry, used: float, now: float) -> None:
        """Replace a send's reservation with what the provider counted."""
        if entry[0] > now - self.span:  # still in the window (else already dropped)
            self.total += used - entry[1]
            entry[1] = used
