"""Live progress of runs: done/total, rate, ETA, in flight, errors, rate-limit hits, tokens.

The runner only bumps plain integer counters on the hot path; tickers render
them with rich at most `REFRESH_HZ` times a second, starting after `SHOW_AFTER`
seconds so quick runs print nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

REFRESH_HZ = 4
SHOW_AFTER = 1.0


@dataclass(slots=True)
class Counters:
    """What the runner counts while it runs (read by the display and the summary)."""

    total: int
    done: int = 0
    errors: int = 0
    in_flight: int = 0
    rate_limits: int = 0
    retries: int = 0
    tokens: int = 0
    cache_hits: int = 0
    started: float = field(default_factory=time.perf_counter)

    def rate(self) -> float:
        """Samples finished per second so far."""
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


class ProgressDisplay:
    """Live progress lines, one per run (several models run side by side).

    Nothing is drawn until the display has existed for `SHOW_AFTER` seconds;
    redraws are throttled to `REFRESH_HZ` however many runs call `tick`.
    """

    def __init__(self, console: Any = None) -> None:
        self._console = console
        self._rows: list[tuple[str, Counters, Any]] = []
        self._live: Any = None
        self._started = time.perf_counter()
        self._last_draw = 0.0

    def add(self, title: str, counters: Counters) -> None:
        """Show one more run."""
        from rich.progress_bar import ProgressBar

        self._rows.append((title, counters, ProgressBar(total=max(counters.total, 1), width=30)))

    def tick(self) -> None:
        """Redraw (called by each run's ticker; throttled)."""
        now = time.perf_counter()
        if now - self._last_draw < 0.9 / REFRESH_HZ:
            return
        if self._live is None:
            if now - self._started < SHOW_AFTER:
                return
            self._start()
        self._last_draw = now
        self._live.update(self._render(), refresh=True)

    def _start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = self._console or Console(stderr=True)
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._live.start()

    def _render(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        for title, c, bar in self._rows:
            rate = c.rate()
            left = c.total - c.done
            eta = _duration(left / rate) if rate > 0 else "-:--"
            bar.update(completed=c.done)
            grid.add_row(
                title,
                bar,
                f"{c.done}/{c.total}",
                f"{rate:,.0f}/s",
                f"ETA {eta}",
                f"in flight {c.in_flight}",
                f"errors {c.errors}",
                f"rate-limited {c.rate_limits}",
                f"tokens {c.tokens:,}",
            )
        from gauge.model.rate import key_stats

        for k in key_stats():  # rate control per connection key, live
            grid.add_row(
                f"  {k['key']}",
                f"concurrency {k['concurrency']}{'' if k['adaptive'] else ' (fixed)'}",
                f"in flight {k['in_flight']}",
                f"rate-limit hits {k['rate_limit_hits']}",
                f"{k['tokens_per_minute']:,.0f} tokens/min",
            )
            if k.get("slowed"):  # why the key slowed down, in words
                grid.add_row("", f"slowed: {k['slowed']}")
        return grid

    def close(self) -> None:
        """Draw the final state and stop (no-op if the display never started)."""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None
