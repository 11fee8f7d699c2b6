"""Live progress of runs: done/total, rate, ETA, errors, rate control, tokens.

The runner only bumps plain integer counters on the hot path; tickers call
`ProgressDisplay.tick`, which draws at most `REFRESH_HZ` times a second,
starting after `SHOW_AFTER` seconds so quick runs print nothing.

On a terminal the display is a transient rich Live region fitted to the
terminal's width: one line per run (label, bar, done/total, rate, ETA,
errors) and, when it does not fit on that line, a short second line with its
connection key's rate control (in flight of the limit, rate-limit hits,
tokens/min) and why it slowed down. Labels are model names (plus the host when
two would read alike), never the internal key string. Without a terminal (CI
logs, pipes) it prints plain lines instead: one per run every `PLAIN_EVERY`
seconds or each tenth of the run, and one when a run ends.

A run with provider batch jobs gets a line for them (batch_progress.py); in
plain mode each job's state changes are printed, and while jobs are in flight
a heartbeat every few minutes replaces the every-10-seconds sample line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gauge.evaluation.batch_progress import BatchBoard
from gauge.evaluation.cost_limit import Spend

REFRESH_HZ = 4
SHOW_AFTER = 1.0
PLAIN_EVERY = 10.0
"""Seconds between plain progress lines (no terminal); a line also marks each 10 %."""
WIDE = 120
"""Terminal columns from which a run's rate control shares its line (and more shows)."""


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
    loading: bool = False
    """The model is loading (a local model before its first sample)."""
    started: float = field(default_factory=time.perf_counter)
    batches: BatchBoard = field(default_factory=BatchBoard)
    """The run's provider batch jobs (its BatchObserver; empty without batching)."""
    spend: Spend = field(default_factory=Spend)
    """USD spent so far (gauge.evaluation.cost_limit; unknown without a price)."""

    def rate(self) -> float:
        """Samples finished per second so far."""
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


def _per_second(rate: float) -> str:
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


def _compact(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n:,.0f}"


def _host(url: str) -> str | None:
    from urllib.parse import urlsplit

    if not url:
        return None
    netloc = urlsplit(url if "://" in url else f"//{url}").netloc
    return netloc.rpartition("@")[2] or None


def key_label(key: str) -> tuple[str, str | None]:
    """(model, host) of a connection key as stats show it, for people to read.

    Keys are `provider|base_url|credential fingerprint|model` (some providers
    use other parts): the model reads `provider/model`, the host is the base
    URL's (None for the provider's default); the fingerprint is never shown.
    """
    parts = key.split("|")
    if len(parts) < 2:
        return key, None
    provider = parts[0]
    if provider == "hf":  # hf|model path|device|dtype
        return f"hf/{parts[1].rstrip('/').rpartition('/')[2] or parts[1]}", None
    if len(parts) == 4:
        return f"{provider}/{parts[3]}", _host(parts[1])
    return f"{provider}/{parts[-1]}", None


@dataclass(slots=True)
class _Run:
    title: str
    counters: Counters
    model: Any = None
    task: str | None = None
    step: int = -1  # the last tenth printed (plain lines)
    loading_shown: bool = False
    ended: bool = False  # its last plain line is printed


@dataclass(slots=True)
class _Line:
    """One display line as (text, style) pieces; `width` in terminal cells."""

    pieces: list[tuple[str, str]] = field(default_factory=list)
    width: int = 0

    def add(self, text: str, style: str = "") -> _Line:
        from rich.cells import cell_len

        self.pieces.append((text, style))
        self.width += cell_len(text)
        return self

    def plain(self) -> str:
        return "".join(text for text, _ in self.pieces)


def _fit(text: str, width: int) -> str:
    """`text` within `width` cells, cut with an ellipsis only if it must be."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(width - 1, 0)) + "…" if width > 0 else ""


class ProgressDisplay:
    """Progress of runs (several models run side by side) on one console.

    Nothing is drawn until the display has existed for `SHOW_AFTER` seconds;
    redraws are throttled to `REFRESH_HZ` however many runs call `tick`.
    """

    def __init__(self, console: Any = None) -> None:
        self._console = console
        self._runs: list[_Run] = []
        self._live: Any = None
        self._plain = False
        self._shown = False
        self._started = time.perf_counter()
        self._last_draw = 0.0
        self._last_plain = 0.0
        self._seen = self._requests()  # keys busy before this display: not shown

    def add(
        self, title: str, counters: Counters, model: Any = None, task: str | None = None
    ) -> None:
        """Show one more run: `title` (the model's name), its `model` (for its
        connection key's rate control) and `task` name (shown when runs differ in it)."""
        self._runs.append(_Run(title, counters, model, task))

    def tick(self) -> None:
        """Redraw (called by each run's ticker; throttled)."""
        now = time.perf_counter()
        if now - self._last_draw < 0.9 / REFRESH_HZ:
            return
        if not self._shown:
            if now - self._started < SHOW_AFTER:
                return
            self._start()
        self._last_draw = now
        if self._plain:
            self._print_plain(now)
        else:
            self._live.update(self._render(), refresh=True)

    def close(self) -> None:
        """Draw the final state and stop (no-op if the display never started).

        A terminal's live region is transient: it is cleared, so the results
        table printed next is the only thing left. Without a terminal, each run
        gets its last progress line.
        """
        if not self._shown:
            return
        self._shown = False
        if self._plain:
            self._print_plain(time.perf_counter(), final=True)
        elif self._live is not None:
            live, self._live = self._live, None
            try:
                live.update(self._render(), refresh=True)
            finally:
                live.stop()

    # -- drawing -------------------------------------------------------------------------

    def _start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = self._console = self._console or Console(stderr=True)
        self._shown = True
        live = console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)
        if not live:
            self._plain = True
            return
        self._live = Live(console=console, auto_refresh=False, transient=True)
        self._live.start()

    @staticmethod
    def _requests() -> dict[str, int]:
        try:
            from gauge.model.rate import key_stats

            return {k["key"]: k["requests"] for k in key_stats()}
        except RuntimeError:
            return {}

    def _key_stats(self) -> tuple[list[dict[str, Any] | None], list[dict[str, Any]]]:
        """Each run's key stats (None: unknown) and those of other keys busy since the start."""
        from gauge.model.rate import key_stats

        per_run: list[dict[str, Any] | None] = []
        mine: set[str] = set()
        for run in self._runs:
            stats = None
            if run.model is not None:
                try:
                    stats = run.model.rate_stats()
                except RuntimeError:  # outside the model's event loop
                    stats = None
            if stats is not None:
                mine.update(s["key"] for s in stats.get("replicas") or [stats])
            per_run.append(stats)
        try:
            every = key_stats()
        except RuntimeError:
            every = []
        others = [
            k for k in every if k["key"] not in mine and k["requests"] > self._seen.get(k["key"], 0)
        ]
        return per_run, others

    def _labels(self, per_run: list[dict[str, Any] | None], wide: bool) -> list[str]:
        """A label per run: its model, its task too when runs differ in it (or when wide)."""
        tasks = {run.task for run in self._runs}
        labels = [
            f"{run.task} {run.title}" if run.task and (wide or len(tasks) > 1) else run.title
            for run in self._runs
        ]
        for i, stats in enumerate(per_run):  # the same name on two hosts: say which
            if stats is not None and labels.count(labels[i]) > 1:
                host = key_label(stats["key"])[1]
                labels[i] += f" @ {host}" if host else ""
        return labels

    def _render(self) -> Any:
        from rich.text import Text

        console = self._console
        width = max(console.width if console is not None else 80, 20)
        height = console.height if console is not None else None
        lines = self.lines(width, unicode=_unicode(console), height=height)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            for piece, style in line.pieces:
                text.append(piece, style or None)
        return text

    def lines(self, width: int, unicode: bool = True, height: int | None = None) -> list[_Line]:
        """The display's lines for a terminal `width` cells wide (each fits in it);
        past `height` lines, finished runs shrink to one line naming them."""
        wide = width >= WIDE
        per_run, others = self._key_stats()
        labels = self._labels(per_run, wide)
        label_width = max((len(label) for label in labels), default=0)
        if label_width > width // 2:
            label_width = 0  # long labels: no column alignment
        blocks: list[list[_Line]] = []
        for run, label, stats in zip(self._runs, labels, per_run, strict=True):
            blocks.append(
                self._run_lines(run, label.ljust(label_width), stats, width, wide, unicode)
            )
            if (batches := run.counters.batches.line(width)) is not None:
                blocks[-1].append(_Line().add(batches))
        for stats in others:
            name, host = key_label(stats["key"])
            head = f"  {name}" + (f" @ {host}" if host and wide else "")
            blocks.append(self._key_lines(_Line().add(head, "bold"), stats, width, wide))
        if height is not None and sum(map(len, blocks)) > height:
            done = [
                i for i, run in enumerate(self._runs) if run.counters.done >= run.counters.total
            ]
            if done:
                names = "finished: " + ", ".join(labels[i] for i in done)
                if len(names) > width:  # too many to name: count them
                    names = f"{len(done)} runs finished"
                summary = _Line().add(names, "dim")
                blocks = [[summary]] + [b for i, b in enumerate(blocks) if i not in done]
        return [line for block in blocks for line in block]

    def _run_lines(
        self,
        run: _Run,
        label: str,
        stats: dict[str, Any] | None,
        width: int,
        wide: bool,
        unicode: bool,
    ) -> list[_Line]:
        c = run.counters
        if c.loading:  # before the first sample: "loading hf/gauge-tiny... 0:07"
            elapsed = _duration(time.perf_counter() - c.started)
            return [_Line().add("loading ").add(label.rstrip(), "bold").add(f"... {elapsed}")]
        first = _Line().add(label, "bold")
        numbers = _numbers(c)
        numbers_width = sum(len(text) for text, _ in numbers)
        if first.width + 1 + numbers_width > width:  # tight: no padding for alignment
            numbers = _numbers(c, pad=False)
            numbers_width = sum(len(text) for text, _ in numbers)
        room = width - first.width - numbers_width - 2
        lines = [first]
        if room < -1:  # a long label: the numbers go on a line of their own
            lines.append(_Line().add("  "))
            room = width - numbers_width - 4
        bar = min(room, 40 if wide else 30)
        if bar >= 6:
            done = round(bar * c.done / c.total) if c.total else bar
            lines[-1].add(" ")
            lines[-1].add(("━" if unicode else "#") * done, "bar.complete")
            lines[-1].add(("─" if unicode else "-") * (bar - done), "bar.back")
        lines[-1].add(" ")
        for text, style in numbers:
            lines[-1].add(text, style)
        if c.done >= c.total:  # finished: what it met, when there is room
            tail = f" · rate-limited {c.rate_limits} · tokens {c.tokens:,} · cost {_cost(c)}"
            if lines[-1].width + len(tail) <= width:
                lines[-1].add(tail, "dim")
            return lines
        if stats is None:
            return lines
        return lines[:-1] + self._key_lines(lines[-1], stats, width, wide, c)

    @staticmethod
    def _key_lines(
        head: _Line, stats: dict[str, Any], width: int, wide: bool, run: Counters | None = None
    ) -> list[_Line]:
        """`head` with the key's rate control folded in when it all fits, else on a
        short second line (the least useful facts left out if they do not fit).

        `run`: the counters of the run on this key (its own rate-limit hits and tokens).
        """
        from rich.cells import cell_len

        limit = f"{stats['in_flight']} of {stats['concurrency']}"
        hits = stats["rate_limit_hits"] if run is None else run.rate_limits
        parts = [
            (f"in flight {limit}" + ("" if stats["adaptive"] else " (fixed)"), ""),
            (f"rate-limited {hits}", "yellow" if hits else ""),
            (f"{_compact(stats['tokens_per_minute'])} tokens/min", ""),
        ]
        if run is not None and wide:
            parts.append((f"tokens {run.tokens:,}", ""))
            parts.append((f"cost {_cost(run)}", ""))
        if "replicas" in stats:
            parts.append((f"{len(stats['replicas'])} replicas", "dim"))
        elif host := key_label(stats["key"])[1]:
            parts.append((host, "dim"))
        slowed = stats.get("slowed")

        def cost(some: list[tuple[str, str]]) -> int:
            return head.width + sum(cell_len(text) + 3 for text, _ in some)

        lines = [head]
        fold = parts  # on the head line: all, or at least the first three (the rest are extras)
        while len(fold) > 3 and cost(fold) > width:
            fold = fold[:-1]
        if cost(fold) <= width:
            for text, style in fold:
                head.add(" · ", "dim").add(text, style)
        else:  # a short second line, leaving out the extras that do not fit
            lines.append(_Line().add("  "))
            for i, (text, style) in enumerate(parts):
                sep = " · " if i else ""
                if lines[-1].width + len(sep) + cell_len(text) <= width:
                    lines[-1].add(sep, "dim").add(text, style)
        if slowed:
            note = f"slowed: {slowed}"
            if lines[-1].width + 3 + cell_len(note) <= width:
                lines[-1].add(" · ", "dim").add(note, "yellow")
            else:  # on lines of its own, broken between words
                import textwrap

                for i, part in enumerate(textwrap.wrap(note, max(width - 4, 10))[:3]):
                    indent = "    " if i else "  "
                    lines.append(_Line().add(indent).add(_fit(part, width - len(indent)), "yellow"))
        return lines

    # -- plain lines (no terminal) ---------------------------------------------------------

    def _print_plain(self, now: float, final: bool = False) -> None:
        due = final or now - self._last_plain >= PLAIN_EVERY
        if due:
            self._last_plain = now
        todo = [i for i, run in enumerate(self._runs) if not run.ended and _plain_due(run, due)]
        news = [self._batch_news(run, final) for run in self._runs]
        if not todo and not any(news):  # the common case: no key stats read
            return
        per_run, _ = self._key_stats()
        labels = self._labels(per_run, wide=False)
        for label, lines in zip(labels, news, strict=True):
            for line in lines:
                self._say(f"[{label}] {line}")
        for i in todo:
            run, c = self._runs[i], self._runs[i].counters
            if c.loading:
                run.loading_shown = True
                self._say(f"[{labels[i]}] loading the model...")
                continue
            finished = c.done >= c.total
            run.step = 10 * c.done // c.total if c.total else 10
            run.ended = finished or final
            stopped = ", stopped" if final and not finished else ""
            self._say(f"[{labels[i]}] {_plain_numbers(c, per_run[i], finished)}{stopped}")

    @staticmethod
    def _batch_news(run: _Run, final: bool) -> list[str]:
        """Plain lines about a run's batch jobs: state changes, and heartbeats while waiting."""
        board = run.counters.batches
        if not board.jobs or run.ended:
            return []
        news = board.take_news()
        return news if final else news + board.heartbeats()

    def _say(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)


def _plain_due(run: _Run, due: bool) -> bool:
    """Whether `run` gets a plain line now: loading (once), each interval, tenth, and the end."""
    c = run.counters
    if c.loading:
        return not run.loading_shown
    step = 10 * c.done // c.total if c.total else 10
    # Waiting on batch jobs (hours, maybe): their heartbeat says where it stands instead.
    due = due and not c.batches.waiting()
    return due or c.done >= c.total or step > run.step


def _cost(c: Counters) -> str:
    """The run's spend so far: "$0.0123", or "unknown" without a price."""
    from gauge.model.cost import usd

    return usd(c.spend.total)


def _unicode(console: Any) -> bool:
    encoding = (getattr(console, "encoding", "") or "").lower()
    return encoding.startswith("utf")


def _numbers(c: Counters, pad: bool = True) -> list[tuple[str, str]]:
    """done/total, rate, ETA (or time taken) and errors, as (text, style) pieces
    (`pad`: padded so that the columns of several runs line up)."""
    rate = c.rate()
    elapsed = time.perf_counter() - c.started
    size = len(str(c.total)) if pad else 0
    if c.done >= c.total:
        when = f"in {_duration(elapsed)}"
    else:
        when = f"ETA {_duration((c.total - c.done) / rate) if rate > 0 else '-:--'}"
    return [
        (f"{c.done:>{size}}/{c.total}", ""),
        (f"  {_per_second(rate):>{6 if pad else 0}}", ""),
        (f"  {when}", ""),
        (f"  errors {c.errors}", "red" if c.errors else ""),
    ]


def _plain_numbers(c: Counters, stats: dict[str, Any] | None, finished: bool) -> str:
    rate = c.rate()
    elapsed = time.perf_counter() - c.started
    if finished:
        when = f"done in {_duration(elapsed)}"
    else:
        when = f"ETA {_duration((c.total - c.done) / rate) if rate > 0 else '-:--'}"
    line = (
        f"{c.done}/{c.total} samples, {_per_second(rate)}, {when}, "
        f"errors {c.errors}, rate-limited {c.rate_limits}"
    )
    if stats is not None and not finished:
        line += f", in flight {stats['in_flight']} of {stats['concurrency']}"
        if stats.get("slowed"):
            line += f", slowed: {stats['slowed']}"
    return line
