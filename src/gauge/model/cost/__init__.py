"""Cost accounting: a dated price snapshot shipped as data, user overrides, exact arithmetic.

    price.py     Rates, Price (tiers, batch multiplier), cost_of(usage, price, batch), usd()
    table.py     the snapshot (prices.json), --model-cost-config overrides, find_price()
    prices.json  the snapshot: date, per-provider source URL, batch multiplier, models

A model without a price costs "unknown", never 0 (docs/cost.md).
"""

from gauge.model.cost.price import Price, Rates, Tier, cost_of, usd
from gauge.model.cost.table import (
    clear_overrides,
    find_price,
    load_overrides,
    overrides,
    snapshot,
)

__all__ = [
    "Price",
    "Rates",
    "Tier",
    "clear_overrides",
    "cost_of",
    "find_price",
    "load_overrides",
    "overrides",
    "snapshot",
    "usd",
]
