"""Rate-limit headers: parsing and what a ConnectionKey learns from them."""

from __future__ import annotations

import pytest

from gauge.model.rate.headers import read_headers


def test_openai_headers_are_read() -> None:
    info = read_headers(
        {
            "x-ratelimit-limit-requests": "3000",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-requests": "1m2.5s",
            "x-ratelimit-reset-tokens": "20ms",
        }
    )
    assert info is not None
    assert (info.limit_requests, info.limit_tokens) == (3000.0, 150000.0)
    assert (info.remaining_requests, info.remaining_tokens) == (0.0, 149000.0)
    assert info.reset_requests == pytest.approx(62.5) and info.reset_tokens == pytest.approx(0.02)
    assert info.exhausted_for() == pytest.approx(62.5)


def test_absent_or_garbled_headers() -> None:
    assert read_headers({"content-type": "application/json"}) is None
    info = read_headers({"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-tokens": "5"})
    assert info is not None and info.limit_requests is None and info.remaining_tokens == 5
    assert info.exhausted_for() is None
