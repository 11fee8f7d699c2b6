"""A model's price and the cost of a usage at that price, in exact decimals.

    Rates      USD per 1M tokens: input, output, and where priced apart cached input
               (cache reads), cache writes and reasoning tokens
    Price      a model's rates, its long-context tiers (chosen by prompt length), the
               provider's batch multiplier, and where the price came from
    cost_of    the USD cost of one ModelUsage at a Price (None: unknown)

Arithmetic is `Decimal` throughout, so a run's total is exact to the cent however
many samples it sums. A cost is unknown (None), never guessed and never 0, when
the usage holds tokens of a kind the price has no rate for (cached input, cache
writes), or when it came from a batch and the provider's batch multiplier is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gauge.model.output import ModelUsage

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens of each kind (None: no rate of its own is known)."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    """Reasoning tokens are output tokens; None bills them at the output rate."""


@dataclass(frozen=True, slots=True)
class Tier:
    """Rates that apply when the prompt is longer than `above` tokens."""

    above: int
    rates: Rates


@dataclass(frozen=True, slots=True)
class Price:
    """What one model costs, and where that figure came from."""

    model: str
    """The `provider/model` entry the price was found under."""
    rates: Rates
    tiers: tuple[Tier, ...] = ()
    batch: Decimal | None = None
    """Multiplier for outputs from a provider batch job (0.5 = half price); None: unknown."""
    input_includes_cached: bool = True
    """Whether the provider's input count already holds cache reads and writes."""
    source: str = ""

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The rates for a prompt of `prompt_tokens` (the highest tier it passes)."""
        rates = self.rates
        for tier in self.tiers:
            if prompt_tokens > tier.above:
                rates = tier.rates
        return rates


def cost_of(usage: ModelUsage, price: Price | None, batch: bool = False) -> Decimal | None:
    """USD cost of `usage` at `price`; `batch`: it came from a provider batch job.

    None when the cost is unknown: no price, a batch without a known multiplier,
    or cached / cache-write tokens the price has no rate for.
    """
    if price is None or (batch and price.batch is None):
        return None
    read = usage.input_tokens_cache_read or 0
    write = usage.input_tokens_cache_write or 0
    if price.input_includes_cached:
        uncached = max(0, usage.input_tokens - read - write)
        prompt = usage.input_tokens
    else:
        uncached = usage.input_tokens
        prompt = usage.input_tokens + read + write
    rates = price.rates_for(prompt)
    if (read and rates.cached_input is None) or (write and rates.cache_write is None):
        return None
    reasoning = usage.reasoning_tokens or 0
    output = usage.output_tokens
    total = uncached * rates.input
    if read:
        total += read * (rates.cached_input or 0)
    if write:
        total += write * (rates.cache_write or 0)
    if reasoning and rates.reasoning is not None:
        # Providers count reasoning inside the output; priced apart, it leaves the output.
        total += reasoning * rates.reasoning
        output = max(0, output - reasoning)
    total += output * rates.output
    cost = total / MILLION
    if batch:
        cost *= price.batch or 0
    return cost


def usd(cost: Decimal | None, places: int = 4) -> str:
    """`cost` for people: "$0.0123", or "unknown" (never "$0" for a missing price)."""
    if cost is None:
        return "unknown"
    if cost and abs(cost) < Decimal(1).scaleb(-places):  # too small for `places`: its digits
        return f"${cost.normalize():f}"
    return f"${cost:,.{places}f}"
