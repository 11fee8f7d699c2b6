"""Pure pieces of shared state, no Redis: key names, shown URLs, what is written for
the learned limits, and the arithmetic of the grants a process holds."""

from __future__ import annotations

import pytest

from gauge.model.rate.shared import shown_url
from gauge.model.rate.shared_budgets import Grants, decode_limits, encode_limits
from gauge.model.rate.shared_names import PREFIX, key_names, label, process_id


def test_names_hash_the_connection_key_and_share_one_cluster_slot() -> None:
    key = "openai|https://user:secret@api.example.com/v1?api-key=zzz|3f2a9b1c0d4e|gpt-4o"
    names = key_names(key)
    assert names == key_names(key)  # stable across processes
    assert names != key_names(key.replace("gpt-4o", "gpt-4o-mini"))
    tags = {n.split("{")[1].split("}")[0] for n in names.all()}
    assert len(tags) == 1  # one hash tag: one slot in Redis Cluster
    for name in names.all():
        assert name.startswith(PREFIX)
        assert "secret" not in name and "zzz" not in name and "example" not in name
    assert label(key) == "openai|gpt-4o"


def test_process_ids_sort_by_join_time_and_differ() -> None:
    first, second = process_id(), process_id()
    assert first != second
    assert first[:15] <= second[:15]
    assert "|" not in first and "," not in first  # separators of the scripts' fields


def test_shown_url_hides_the_password() -> None:
    assert shown_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert shown_url("redis://user:pw@host/1") == "redis://user:***@host/1"
    assert shown_url("redis://host:6379/0") == "redis://host:6379/0"


def test_limits_round_trip_exactly() -> None:
    limits = (2845.714285714286, None, True, 0.97)
    assert decode_limits(encode_limits(limits, "p1")) == (limits, "p1")
    assert decode_limits(encode_limits((None, 6e5, False, 1.0), "p2")) == (
        (None, 6e5, False, 1.0),
        "p2",
    )
    assert decode_limits("") is None and decode_limits("a,b,c,d,e") is None


def test_grants_go_at_their_time_in_the_schedule() -> None:
    grants = Grants("r")
    rate = 10.0  # 0.1 s per request; the burst is one request
    grants.spans.append([100.0, 100.5])  # a block of 5, starting now
    times = [grants.take(1, rate, 100.0) for _ in range(5)]
    assert times == pytest.approx([100.0, 100.1, 100.2, 100.3, 100.4])
    assert grants.take(1, rate, 100.0) is None  # none left: fetch the next block


def test_grants_not_used_in_their_time_expire() -> None:
    grants = Grants("r")
    grants.spans.append([100.0, 101.0])  # 10 requests at 10/s
    # Two seconds later the block is gone: unused grants do not add up to a burst.
    assert grants.take(1, 10.0, 102.0) is None
    grants.spans.append([102.0, 103.0])
    # Half a second late: what passed is lost but for the burst (one request, and
    # the slack for the round trip), the rest goes at its time.
    assert grants.take(1, 10.0, 102.5) == pytest.approx(102.5 - 0.1 - 0.01)
    assert grants.held(10.0) == pytest.approx(5.1)


def test_many_grants_at_once_go_when_earned_but_the_burst() -> None:
    grants = Grants()
    grants.spans.append([0.0, 1.0])  # 1000 requests at 1000/s: the burst is 20
    assert grants.take(500, 1000.0, 0.0) == pytest.approx(0.48)
    grants.trim(0.9)  # a pause until 0.9: what it covers is dropped
    assert grants.held(1000.0) == pytest.approx(100.0)
