"""Cost arithmetic against hand-computed totals: cached, cache writes, reasoning, tiers, batch."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gauge.model.cost import Price, Rates, cost_of, find_price, usd
from gauge.model.output import ModelUsage


def price(provider: str, model: str) -> Price:
    found = find_price(provider, model)
    assert found is not None, f"{provider}/{model} has no price"
    return found


def test_openai_cached_input_is_part_of_the_input_count() -> None:
    # gpt-4o: $2.50 in, $1.25 cached, $10 out. 1,000 input of which 200 cached, 500 out:
    # 800 x 2.50 + 200 x 1.25 + 500 x 10 = 2,000 + 250 + 5,000 = 7,250 per 1M -> $0.00725
    usage = ModelUsage(input_tokens=1000, output_tokens=500, input_tokens_cache_read=200)
    assert cost_of(usage, price("openai", "gpt-4o")) == Decimal("0.00725")
    # A batch job: half of it, cached part included.
    assert cost_of(usage, price("openai", "gpt-4o"), batch=True) == Decimal("0.003625")


def test_anthropic_cache_reads_and_writes_are_apart_from_the_input_count() -> None:
    # claude-sonnet-4-5: $3 in, $3.75 cache write, $0.30 cache read, $15 out.
    # 1,000 x 3 + 2,000 x 3.75 + 10,000 x 0.30 + 300 x 15 = 3,000 + 7,500 + 3,000 + 4,500
    usage = ModelUsage(
        input_tokens=1000,
        output_tokens=300,
        input_tokens_cache_write=2000,
        input_tokens_cache_read=10000,
    )
    sonnet = price("anthropic", "claude-sonnet-4-5-20250929")
    assert cost_of(usage, sonnet) == Decimal("0.018")
    assert cost_of(usage, sonnet, batch=True) == Decimal("0.009")


def test_the_long_context_tier_counts_cached_tokens_in_the_prompt_length() -> None:
    sonnet = price("anthropic", "claude-sonnet-4")
    # 150,000 + 60,000 read = 210,000 > 200,000: $6 in, $0.60 read, $22.50 out.
    # 150,000 x 6 + 60,000 x 0.60 + 1,000 x 22.50 = 900,000 + 36,000 + 22,500
    long = ModelUsage(input_tokens=150_000, output_tokens=1000, input_tokens_cache_read=60_000)
    assert cost_of(long, sonnet) == Decimal("0.9585")
    # Exactly 200,000 is not above the threshold: 200,000 x 3 + 1,000 x 15
    edge = ModelUsage(input_tokens=200_000, output_tokens=1000)
    assert cost_of(edge, sonnet) == Decimal("0.615")


def test_gemini_pro_prompts_over_200k_cost_more() -> None:
    pro = price("google", "gemini-2.5-pro")
    # 250,000 x 2.50 + 2,000 x 15 = 625,000 + 30,000
    assert cost_of(ModelUsage(input_tokens=250_000, output_tokens=2000), pro) == Decimal("0.655")
    # 100,000 x 1.25 + 2,000 x 10 = 125,000 + 20,000
    assert cost_of(ModelUsage(input_tokens=100_000, output_tokens=2000), pro) == Decimal("0.145")


def test_reasoning_tokens_bill_at_the_output_rate_unless_priced_apart() -> None:
    usage = ModelUsage(input_tokens=100, output_tokens=1000, reasoning_tokens=600)
    # o3: $2 in, $8 out, reasoning inside the output: 100 x 2 + 1,000 x 8 = 8,200
    assert cost_of(usage, price("openai", "o3")) == Decimal("0.0082")
    apart = Price("x/y", Rates(Decimal(1), Decimal(10), reasoning=Decimal(20)))
    # 100 x 1 + 400 x 10 + 600 x 20 = 100 + 4,000 + 12,000
    assert cost_of(usage, apart) == Decimal("0.0161")


@pytest.mark.parametrize(
    ("usage", "found", "batch"),
    [
        # Gemini's cached rate is not in the snapshot: a cached read makes it unknown.
        (
            ModelUsage(input_tokens=10, input_tokens_cache_read=5),
            ("google", "gemini-2.5-flash"),
            False,
        ),
        # Together's batch discount is not a fixed multiplier.
        (
            ModelUsage(input_tokens=10),
            ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
            True,
        ),
        # OpenAI reports no cache writes: a usage with them has no rate.
        (ModelUsage(input_tokens=10, input_tokens_cache_write=5), ("openai", "gpt-4o"), False),
        # No price at all.
        (ModelUsage(input_tokens=10), ("mock", "test"), False),
    ],
)
def test_what_cannot_be_priced_is_unknown_never_zero(
    usage: ModelUsage, found: tuple[str, str], batch: bool
) -> None:
    assert cost_of(usage, find_price(*found), batch=batch) is None


def test_sums_are_exact_and_unknown_parts_with_tokens_make_them_unknown() -> None:
    one = ModelUsage(input_tokens=41, output_tokens=7, total_tokens=48)
    one.cost = cost_of(one, price("openai", "gpt-4o-mini"))
    # 41 x 0.15 + 7 x 0.60 = 6.15 + 4.20 = 10.35 per 1M
    assert one.cost == Decimal("0.00001035")
    total = ModelUsage()
    for _ in range(1000):
        total = total + one
    assert total.cost == Decimal("0.01035")  # no float drift after 1,000 additions
    unpriced = ModelUsage(input_tokens=3, total_tokens=3)
    assert (total + unpriced).cost is None
    assert (unpriced + total).cost is None
    assert (total + ModelUsage()).cost == Decimal("0.01035")  # an empty part adds nothing


def test_usd_says_unknown_for_no_cost() -> None:
    assert usd(None) == "unknown"
    assert usd(Decimal("0")) == "$0.0000"
    assert usd(Decimal("1234.56789"), places=2) == "$1,234.57"
