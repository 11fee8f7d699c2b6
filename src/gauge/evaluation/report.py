"""The old static report's names, kept for its callers: the page is now the viewer.

`gauge view` and the viewer live in gauge.view (docs/view.md); `build_report(logs)`
builds the same page from logs read with `read_log`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gauge.evaluation.journal import read_journal
from gauge.evaluation.rows import EvalLog
from gauge.view.costs import run_cost, total_cost
from gauge.view.data import runs_of
from gauge.view.page import build_page

__all__ = ["build_report", "run_cost", "total_cost"]


def build_report(logs: Sequence[EvalLog]) -> str:
    """The viewer page (one self-contained HTML string) of the journals `logs` were read from."""
    return build_page(runs_of([read_journal(log.path) for log in logs]))
