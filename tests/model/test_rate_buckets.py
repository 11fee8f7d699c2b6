"""Token buckets: reservations line up in time, reconciliation gives tokens back."""

from __future__ import annotations

import pytest

from gauge.model.rate.buckets import TokenBucket
from gauge.model.rate.keys import estimate_tokens


def test_reservations_queue_at_the_refill_rate() -> None:
    bucket = TokenBucket(rate=10.0, capacity=1.0)
    waits = [bucket.reserve(1, now=0.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # After the debt is paid back the next request goes at once.
    assert bucket.reserve(1, now=0.5) == 0.0


def test_per_minute_bucket_and_small_burst() -> None:
    bucket = TokenBucket.per_minute(30000)  # 500/s, burst of 20 ms = 10
    assert bucket.rate == 500.0 and bucket.capacity == pytest.approx(10.0)
    sent = sum(1 for _ in range(100) if bucket.reserve(1, now=0.0) == 0.0)
    assert sent == 10  # never a minute's worth at once
    assert TokenBucket.per_minute(60).capacity == 1.0  # at least one unit


def test_adjust_refunds_and_charges_but_never_past_capacity() -> None:
    bucket = TokenBucket(rate=100.0, capacity=100.0)
    assert bucket.reserve(1000, now=0.0) == pytest.approx(9.0)
    bucket.adjust(900, now=0.0)  # the reply used 100 of the 1000 reserved
    assert bucket.reserve(0, now=0.0) == 0.0 and bucket.tokens == pytest.approx(0.0)
    bucket.adjust(10_000, now=0.0)
    assert bucket.tokens == 100.0
    bucket.adjust(-150, now=0.0)  # under-reserved: take the rest
    assert bucket.reserve(0, now=0.0) == pytest.approx(0.5)


def test_set_rate_and_drain_to() -> None:
    bucket = TokenBucket(rate=1.0, capacity=1.0, now=0.0)
    bucket.set_rate(100.0, now=0.0)
    assert bucket.capacity == 2.0 and bucket.tokens == 1.0
    bucket.drain_to(0.0, now=0.0)
    assert bucket.reserve(1, now=0.0) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(rate=0)


def test_estimate_is_chars_over_four_plus_framing_plus_max_tokens() -> None:
    assert estimate_tokens(["x" * 400, "y" * 40], max_tokens=100) == 100 + 10 + 8 + 100
    assert estimate_tokens(["abc"], max_tokens=None) == 0 + 4


def test_a_pause_pays_debt_off_but_saves_no_credit() -> None:
    bucket = TokenBucket(rate=10.0, capacity=1.0, now=0.0)
    bucket.reserve(21, now=0.0)  # 20 in debt: 2 s to pay off
    bucket.hold(until=1.0, now=0.0)  # the pause pays 1 s of it ...
    assert bucket.reserve(0, now=1.0) == pytest.approx(1.0)  # ... not twice
    bucket.hold(until=1.5, now=0.5)  # an extended pause earns only its new part
    assert bucket.reserve(0, now=1.5) == pytest.approx(0.5)
    bucket.hold(until=5.0, now=1.5)  # a long pause ends at zero, with no burst saved
    assert bucket.tokens == 0.0 and bucket.reserve(1, now=5.0) == pytest.approx(0.1)
