"""The adaptive concurrency controller, driven with explicit clock values."""

from __future__ import annotations

import pytest

from gauge.model.rate.adaptive import AdaptiveConcurrency


def test_slow_start_grows_only_while_saturated() -> None:
    c = AdaptiveConcurrency(start=4, maximum=20)
    assert c.on_success(saturated=False) == 4
    # +1 per saturated success: the limit doubles every round trip.
    assert [c.on_success(saturated=True) for _ in range(4)] == [5, 6, 7, 8]
    for _ in range(20):
        c.on_success(saturated=True)
    assert c.limit == 20  # capped at the maximum


def test_rate_limit_halves_once_per_cooldown_then_grows_additively() -> None:
    c = AdaptiveConcurrency(start=40, cooldown=1.0)
    assert c.on_rate_limit(now=10.0) == 20
    # The rest of the same burst of 429s is one signal, not five.
    assert [c.on_rate_limit(now=10.0 + i * 0.1) for i in range(1, 6)] == [20] * 5
    assert c.on_rate_limit(now=11.0) == 10
    assert not c.slow_start
    # Additive increase: one slot per `limit` saturated successes (a round trip).
    grown = [c.on_success(saturated=True) for _ in range(10 + 11)]
    assert grown[8] == 10 and grown[9] == 11 and grown[-1] == 12


def test_never_below_minimum() -> None:
    c = AdaptiveConcurrency(start=3, minimum=2, cooldown=0.0)
    for t in range(5):
        c.on_rate_limit(now=float(t))
    assert c.limit == 2


def test_fixed_limit_never_moves() -> None:
    c = AdaptiveConcurrency(start=10, fixed=3)
    assert c.on_success(saturated=True) == 3
    assert c.on_rate_limit(now=0.0) == 3
    c.set_fixed(None)
    assert c.on_success(saturated=True) == 4


def test_bad_bounds_are_rejected() -> None:
    with pytest.raises(ValueError, match="minimum <= maximum"):
        AdaptiveConcurrency(start=1, minimum=5, maximum=2)
    with pytest.raises(ValueError, match="max_connections must be >= 1"):
        AdaptiveConcurrency(start=1, fixed=0)
