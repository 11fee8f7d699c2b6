"""Eval journals as data: `from gauge.log import read_log`."""

from gauge.evaluation.journal import Journal, JournalError, read_journal
from gauge.evaluation.rows import EvalLog, read_log

__all__ = ["EvalLog", "Journal", "JournalError", "read_journal", "read_log"]
