"""What runs spent, from their journals: a run's USD, and the total over runs.

A model without a price is "unknown", never $0 (docs/cost.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from gauge.evaluation.rows import EvalLog
from gauge.model.cost import usd


def run_cost(log: EvalLog) -> Decimal | None:
    """USD a run spent: its summary's, else the sum of its samples'; None: unknown."""
    summary = log.summary or {}
    if "cost" in summary:
        return None if summary["cost"] is None else Decimal(str(summary["cost"]))
    total = Decimal(0)
    for row in log.rows:  # a run that never finished: what its samples recorded
        if row.get("cost") is not None:
            total += Decimal(str(row["cost"]))
        elif row["total_tokens"]:
            return None
    return total


def total_cost(logs: Sequence[EvalLog]) -> str:
    """ "total cost $1.2345", or "total cost unknown (model, ... has no price)"."""
    costs = [run_cost(log) for log in logs]
    unpriced = sorted({log.model for log, cost in zip(logs, costs, strict=True) if cost is None})
    if unpriced:
        return f"total cost unknown ({', '.join(unpriced)} has no price)"
    return f"total cost {usd(sum((c or Decimal(0) for c in costs), Decimal(0)))}"
