"""ConnectionKey: key-wide pauses, budgets learned from headers, reconciliation, stats."""

from __future__ import annotations

import asyncio

import pytest
from rate_calls import fail, ok

from gauge.model.output import ModelUsage
from gauge.model.rate import key_stats
from gauge.model.rate.budgets import RECOVER_AFTER, TOKEN_RECHECK, TOKEN_RECHECK_FAR
from gauge.model.rate.headers import TOKEN_SAFETY
from gauge.model.rate.inference import BURST_HITS, PROBE_EVERY
from gauge.model.rate.keys import ConnectionKey, connection_key


class FakeClock:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


def state(clock: FakeClock, key: str = "p|u|k|m", start: int = 8) -> ConnectionKey:
    return connection_key(key, start, clock)


async def test_rate_limit_pauses_the_whole_key_and_cuts_concurrency() -> None:
    clock = FakeClock()
    s = state(clock, start=8)
    s.configure(None, None, None)
    fail(s, "rate_limit", 2.5, 0, None)
    assert s.limiter.limit == 4 and s.counters.rate_limit_hits == 1 and s.gated
    # Every caller on the key now waits out the pause before taking a slot.
    await asyncio.gather(s.admit(0, clock.sleep), s.admit(0, clock.sleep))
    assert clock.sleeps == [2.5] and clock.now == 102.5
    await s.admit(0, clock.sleep)
    assert not s.gated and clock.sleeps == [2.5]


async def test_transient_failures_do_not_pause_or_cut() -> None:
    clock = FakeClock()
    s = state(clock)
    fail(s, "transient", 3.0, 0, None)
    assert s.limiter.limit == 8 and s.pause.until == 0.0 and s.counters.failures == 1


async def test_user_rpm_paces_requests() -> None:
    clock = FakeClock()
    s = state(clock)
    s.configure(None, 600.0, None)  # 10/s
    for _ in range(5):
        await s.admit(0, clock.sleep)
    assert clock.now == pytest.approx(100.4)  # first goes at once, then every 0.1 s


async def test_limits_learned_from_headers_and_user_budget_wins_when_lower() -> None:
    clock = FakeClock()
    s = state(clock)
    s.configure(None, None, None)
    ok(s, 0, 10, False, {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "6000"})
    assert s.budgets.rpm is not None and s.budgets.rpm.rate == pytest.approx(600 * 0.97 / 60)
    assert s.budgets.tpm is not None and s.budgets.tpm.rate == pytest.approx(
        6000 * TOKEN_SAFETY / 60
    )
    s.configure(None, 120.0, None)
    assert s.budgets.rpm.rate == pytest.approx(2.0)
    assert s.stats()["rpm"] == 120.0


async def test_exhausted_budget_in_headers_pauses_until_reset() -> None:
    clock = FakeClock()
    s = state(clock)
    ok(
        s,
        0,
        None,
        False,
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"},
    )
    await s.admit(0, clock.sleep)
    assert clock.sleeps == [1.5]


async def test_tokens_reserved_then_reconciled() -> None:
    clock = FakeClock()
    s = state(clock)
    s.configure(None, None, 6000.0)  # 100 tokens/s, burst 2
    await s.admit(502, clock.sleep)  # the estimate includes max_tokens
    assert sum(clock.sleeps) == pytest.approx(5.0)
    # Checked again a quarter of the wait later (at most 1 s) while far back in
    # line, every TOKEN_RECHECK near its head.
    assert clock.sleeps[0] == pytest.approx(TOKEN_RECHECK_FAR)
    assert max(clock.sleeps[-4:]) <= TOKEN_RECHECK and len(clock.sleeps) < 25
    bucket = s.budgets.tpm
    assert bucket is not None
    # Two more reservations queue behind each other ...
    first = bucket.ticket(505, clock.now)
    second = bucket.ticket(505, clock.now)
    assert bucket.wait_for(first, clock.now) == pytest.approx(5.05)
    assert bucket.wait_for(second, clock.now) == pytest.approx(10.1)
    # ... and a reply that used 105 of its 505 moves both up by 400 tokens.
    ok(s, 505, 105, False, None)
    assert bucket.wait_for(first, clock.now) == pytest.approx(1.05)
    assert bucket.wait_for(second, clock.now) == pytest.approx(6.1)
    # A rejected request was not charged by the provider: its reservation returns too.
    fail(s, "rate_limit", None, 505, None)
    assert bucket.wait_for(first, clock.now) == 0.0
    assert bucket.wait_for(second, clock.now) == pytest.approx(1.05)


async def test_waiting_reservation_moves_up_when_an_earlier_one_is_refunded() -> None:
    clock = FakeClock()
    s = state(clock)
    s.configure(None, None, 6000.0)
    waiter = asyncio.ensure_future(s.admit(1002, clock.sleep))  # 10 s in line
    await asyncio.sleep(0)
    s.refund(800)  # an earlier request gave back 800 tokens
    await waiter
    assert sum(clock.sleeps) == pytest.approx(2.0)


async def test_fixed_max_connections_and_stats() -> None:
    clock = FakeClock()
    s = state(clock, key="openai|https://user:pw@host/v1|abc|m")
    s.configure(3, None, None)
    assert s.limiter.limit == 3
    ok(s, 0, 30, True, None)
    assert s.limiter.limit == 3  # fixed: saturated successes do not grow it
    clock.now += 30
    ok(s, 0, 30, True, None)
    stats = s.stats()
    assert stats["key"] == "openai|https://host/v1|abc|m"  # URL credentials dropped
    assert stats["concurrency"] == 3 and not stats["adaptive"]
    assert stats["requests"] == 2 and stats["tokens"] == 60
    assert stats["tokens_per_minute"] == pytest.approx(120.0)  # 60 tokens over 30 s
    assert any(k["key"] == stats["key"] and k["tokens"] == 60 for k in key_stats())
    s.configure(None, None, None)
    ok(s, 0, 1, True, None)
    assert s.limiter.limit == 4 and s.stats()["adaptive"]


async def test_without_headers_the_rate_is_measured_from_what_was_accepted() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    sent = []
    for _ in range(30):  # 30 sent within the last second and accepted ...
        clock.now += 0.02
        sent.append(clock.now)
        ok(s, 0, 1, True, None, sent_at=clock.now - 0.05)
    # ... then a 429 with Retry-After: 1 for a request sent now.
    fail(s, "rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.budgets.inferred_rpm and s.budgets.learned_rpm == 30 * 60
    assert s.budgets.rpm is not None and s.budgets.rpm.rate == pytest.approx(30 * 0.97)
    assert s.limiter.limit == 47  # 64 + 30 in slow start, then halved: no budget paced it yet
    assert s.pause.until == pytest.approx(clock.now + 1.0)  # the whole Retry-After
    # Requests sent before the 429 and still in flight were accepted too: the
    # measure grows as they come back; later ones do not count.
    for _ in range(10):
        ok(s, 0, 1, False, None, sent_at=clock.now - 0.01)
    ok(s, 0, 1, False, None, sent_at=clock.now + 0.5)
    assert s.budgets.learned_rpm == 40 * 60 and s.budgets.rpm.rate == pytest.approx(40 * 0.97)


async def test_a_later_episode_measures_again_from_a_floor() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    for _ in range(50):
        clock.now += 0.02
        ok(s, 0, 1, False, None, sent_at=clock.now)
    fail(s, "rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.budgets.learned_rpm == 50 * 60
    clock.now += 5.0  # 20 accepted in the last second, 30 still in flight
    for _ in range(30):
        await s.limiter.acquire()
    for _ in range(20):
        clock.now += 0.02
        ok(s, 0, 1, False, None, sent_at=clock.now)
    limit = s.limiter.limit
    fail(s, "rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.budgets.learned_rpm == pytest.approx(50 * 60 * 0.9)  # not 20/s while replies come in
    assert s.limiter.limit == limit  # a budget paces the key: concurrency is not cut
    # A paced key pauses for one request's worth of budget, not the whole Retry-After.
    assert s.pause.until == pytest.approx(clock.now + 1 / (45 * 0.97))
    for _ in range(28):
        ok(s, 0, 1, False, None, sent_at=clock.now - 0.5)
    assert s.budgets.learned_rpm == 48 * 60


async def test_pause_holds_the_buckets_so_no_burst_follows_it() -> None:
    clock = FakeClock()
    s = state(clock)
    s.configure(None, 600.0, None)  # 10/s
    await s.admit(0, clock.sleep)
    s.hold(2.0, clock.now, "test")
    # Nothing was earned during the pause: after it, requests are paced again,
    # not released all at once.
    for _ in range(3):
        await s.admit(0, clock.sleep)
    assert clock.now == pytest.approx(100.0 + 2.0 + 0.2 + 0.1, abs=0.01)


async def test_rate_limit_within_a_learned_budget_lowers_the_margin_not_concurrency() -> None:
    clock = FakeClock()
    s = state(clock, start=16)
    ok(s, 0, 1, False, {"x-ratelimit-limit-tokens": "60000"})
    assert s.budgets.tpm is not None and s.budgets.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY)
    fail(s, "rate_limit", 1.0, 0, None)
    assert s.limiter.limit == 16  # budget-bound: slots are not the problem
    assert s.budgets.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY * 0.97)
    fail(s, "rate_limit", 1.0, 0, None)  # same episode (cooldown): one signal
    assert s.budgets.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY * 0.97)


async def test_the_margin_recovers_after_a_calm_spell() -> None:
    clock = FakeClock()
    s = state(clock, start=16)
    ok(s, 0, 1, False, {"x-ratelimit-limit-tokens": "60000"})
    fail(s, "rate_limit", 1.0, 0, None)
    assert s.budgets.margin == pytest.approx(0.97)
    clock.now += RECOVER_AFTER - 0.1
    ok(s, 0, 1, False, None)
    assert s.budgets.margin == pytest.approx(0.97)
    clock.now += 0.2
    ok(s, 0, 1, False, None)
    assert s.budgets.margin == 1.0 and s.budgets.tpm is not None
    assert s.budgets.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY)


async def test_replies_sent_before_the_budget_existed_are_charged_on_return() -> None:
    clock = FakeClock()
    s = state(clock)
    ok(s, 0, 100, False, {"x-ratelimit-limit-tokens": "60000"})
    bucket = s.budgets.tpm
    assert bucket is not None
    before = bucket.tokens
    ok(s, 0, 300, False, None)  # reserved nothing: it was sent before the budget
    assert bucket.tokens == pytest.approx(before - 300)


async def test_reservations_calibrate_to_real_prompt_and_reply_sizes() -> None:
    clock = FakeClock()
    s = state(clock)
    assert s.budgets.reservation(100, 400) == 500  # nothing learned yet: estimate + max_tokens
    for _ in range(200):  # prompts cost 80 % of the estimate, replies 50 tokens
        ok(
            s,
            0,
            130,
            False,
            None,
            usage=ModelUsage(input_tokens=80, output_tokens=50, total_tokens=130),
            guess=100,
        )
    assert s.budgets.reservation(100, 400) == pytest.approx(130, abs=1)
    assert s.budgets.reservation(100, 20) == 100  # never more reply than max_tokens allows
    assert s.budgets.reservation(100, None) == 80  # no max_tokens: reply not reserved


async def test_the_window_counts_replies_at_their_95th_percentile_once_known() -> None:
    clock = FakeClock()
    s = state(clock)
    assert s.budgets.most(100, 400) == 500  # nothing known: the whole max_tokens
    for output in range(1, 101):  # replies of 1..100 tokens
        ok(
            s,
            0,
            100 + output,
            False,
            None,
            usage=ModelUsage(input_tokens=100, output_tokens=output, total_tokens=100 + output),
            guess=100,
        )
    assert s.budgets.most(100, 400) == 100 + 95
    assert s.budgets.most(100, 50) == 150  # never above max_tokens


class WindowedProvider:
    """A provider that accepts `limit` requests per sliding second (None: any number),
    answering at once, and rejects everything during `storms` ((start, end) times)."""

    def __init__(
        self, clock: FakeClock, limit: int | None, storms: tuple[tuple[float, float], ...] = ()
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.storms = storms
        self.accepted: list[float] = []
        self.rejected = 0

    async def send(self, s: ConnectionKey, retry_after: float | None = None) -> None:
        await s.admit(0, self.clock.sleep)
        now = self.clock.now
        recent = sum(1 for t in self.accepted[-(self.limit or 0) - 1 :] if t > now - 1.0)
        storm = any(a <= now < b for a, b in self.storms)
        if storm or (self.limit is not None and recent >= self.limit):
            self.rejected += 1
            fail(s, "rate_limit", retry_after, 0, None, sent_at=now)
        else:
            self.accepted.append(now)
            ok(s, 0, 1, False, None, sent_at=now)

    def rate(self, since: float) -> float:
        """Accepted requests per second from `since` to now."""
        return sum(1 for t in self.accepted if t >= since) / (self.clock.now - since)


def young_estimate(clock: FakeClock, s: ConnectionKey) -> None:
    """A 429 storm 0.5 s into a run: only 10 requests were sent so far."""
    for _ in range(10):
        clock.now += 0.05
        ok(s, 0, 1, False, None, sent_at=clock.now)
    fail(s, "rate_limit", 0.5, 0, None, sent_at=clock.now)
    assert s.budgets.learned_rpm == 10 * 60  # the measure: far below what the provider takes


async def test_an_under_estimate_recovers_within_a_bounded_number_of_probes() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    young_estimate(clock, s)
    provider = WindowedProvider(clock, None)  # the storm is over: no limit at all
    start = clock.now
    budgets = [s.budgets.learned_rpm]
    while clock.now < start + 5.0:
        await provider.send(s)
        if s.budgets.learned_rpm != budgets[-1]:
            budgets.append(s.budgets.learned_rpm)
    # One window (plus the pause) to settle, then a raise every FAST_PROBE_EVERY
    # by doubling steps: x48 in seven raises, within 5 s of the storm.
    assert [round(b / budgets[0], 2) for b in budgets] == [
        1,
        1.2,
        1.68,
        3.02,
        6.05,
        12.1,
        24.19,
        48.38,
    ]
    assert provider.rejected == 0
    assert provider.rate(clock.now - 1.0) > 100  # was held at 10/s without the probe


async def test_a_probe_that_overshoots_finds_the_real_limit_again() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    for _ in range(20):  # the first wave: 20 accepted in 0.4 s, then the limit
        clock.now += 0.02
        ok(s, 0, 1, False, None, sent_at=clock.now)
    fail(s, "rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.budgets.learned_rpm == 20 * 60
    provider = WindowedProvider(clock, 20)
    provider.accepted = [clock.now - 0.01] * 20
    start = clock.now
    while clock.now < start + 25.0:
        await provider.send(s, retry_after=1.0)
    # One probe crossed the limit; its 429 measured the limit where it was, which
    # confirms it: the next probe comes only PROBE_EVERY later.
    assert provider.rejected == 1
    assert s.budgets.learned_rpm == pytest.approx(20 * 60, rel=0.05)
    assert provider.rate(start + 5.0) == pytest.approx(20 * 0.97, rel=0.03)
    clock.now += PROBE_EVERY
    while clock.now < start + 25.0 + PROBE_EVERY + 5.0:
        await provider.send(s, retry_after=1.0)
    assert 2 <= provider.rejected <= 3  # one slow probe step, found again
    assert s.budgets.learned_rpm == pytest.approx(20 * 60, rel=0.05)


async def test_a_storm_while_the_key_sends_below_its_budget_is_a_pause() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    young_estimate(clock, s)
    s.budgets.learned_rpm = 100 * 60  # as if probed up to 100/s; the key sends 10/s
    s.budgets.rebudget(s.clock())
    for _ in range(10):
        clock.now += 0.1
        ok(s, 0, 1, False, None, sent_at=clock.now)
    clock.now += 2.0
    fail(s, "rate_limit", 0.5, 0, None, sent_at=clock.now)
    assert s.budgets.learned_rpm == 100 * 60  # the budget stays: a brief overload
    assert s.pause.until == pytest.approx(clock.now + 1 / 97)
    # Another episode within a window after that pause: the limit is lower.
    clock.now += 1.2
    for _ in range(10):
        clock.now += 0.01
        ok(s, 0, 1, False, None, sent_at=clock.now)
    fail(s, "rate_limit", 0.5, 0, None, sent_at=clock.now)
    assert s.budgets.learned_rpm == pytest.approx(10 * 60)


async def test_a_burst_of_429s_does_not_confirm_a_limit() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    young_estimate(clock, s)
    provider = WindowedProvider(clock, None, storms=((103.0, 104.0),))
    start = clock.now
    while clock.now < 103.0:
        await provider.send(s)
    budget = s.budgets.learned_rpm
    assert budget is not None and budget > 10 * 60
    while clock.now < 107.0:
        await provider.send(s)
    # The storm hit while the key sent at its budget: the rate was measured
    # there, but a whole burst of 429s is an overload, so probing went on.
    assert provider.rejected > BURST_HITS
    assert s.budgets.learned_rpm is not None and s.budgets.learned_rpm > budget
    assert provider.rate(start) > 0


def _reply(s: ConnectionKey, prompt: int, output: int, guess: int) -> None:
    usage = ModelUsage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)
    ok(s, 0, prompt + output, False, None, usage=usage, guess=guess)


async def test_replies_that_grow_with_the_prompt_are_charged_by_the_prompt() -> None:
    # An echo, a translation, a summary: the reply is as long as the prompt. One
    # average reply would charge a short prompt 5x its cost and a long one half.
    s = state(FakeClock(), key="p|u|k|echo")
    for size in range(10, 310, 3):
        _reply(s, size, size, guess=size)
    assert s.budgets.reservation(20, 400) == pytest.approx(40, abs=2)
    assert s.budgets.reservation(300, 400) == pytest.approx(600, abs=2)
    assert s.budgets.most(20, 400) == pytest.approx(40, abs=2)  # no misses: nothing added
    assert s.budgets.most(300, 250) == 550  # still never above max_tokens


async def test_a_reply_that_shrinks_with_the_prompt_is_charged_its_average() -> None:
    s = state(FakeClock(), key="p|u|k|shrink")
    for size in range(10, 310, 3):
        _reply(s, size, 320 - size, guess=size)
    # A negative slope would charge long prompts less than their replies may cost.
    average = sum(320 - size for size in range(10, 310, 3)) / len(range(10, 310, 3))
    assert s.budgets.reservation(300, 400) == pytest.approx(300 + average, abs=2)


async def test_the_first_replies_calibrate_at_once() -> None:
    s = state(FakeClock(), key="p|u|k|first")
    _reply(s, 80, 50, guess=100)
    # Not a moving average from 1.0 (which would still say ~99 after one reply).
    assert s.budgets.reservation(100, None) == 80
    assert s.budgets.reservation(100, 400) == 130


async def test_a_queued_request_is_sized_when_it_goes() -> None:
    clock = FakeClock()
    s = state(clock, key="p|u|k|sized")
    s.configure(None, None, 60_000.0)  # 1000 tokens/s
    asked: list[float] = []

    def most() -> int:
        asked.append(clock.now)
        return 300

    entry = await s.admit(900, clock.sleep, most)
    # Asked once, after the bucket's wait for the 900 (not when the request queued).
    assert asked == [pytest.approx(100.88)] and entry is not None and entry[1] == 300


BUDGET_LEFT = {
    "x-ratelimit-limit-requests": "6000",
    "x-ratelimit-remaining-requests": "90",
    "x-ratelimit-reset-requests": "1s",
}


async def test_a_429_with_budget_left_retries_the_request_not_the_key() -> None:
    clock = FakeClock()
    s = state(clock, start=8)
    for _ in range(30):
        ok(s, 0, 1, False, None)
    assert fail(s, "rate_limit", 1.0, 0, BUDGET_LEFT) is True  # the key is left as it was
    assert s.pause.until == 0.0 and s.limiter.limit == 8
    assert s.counters.rate_limit_hits == 1 and s.counters.retried_429s == 1
    assert s.stats()["slowed"] is None


async def test_a_429_with_no_budget_left_still_pauses_the_key_and_says_why() -> None:
    clock = FakeClock()
    s = state(clock, start=8)
    spent = {**BUDGET_LEFT, "x-ratelimit-remaining-requests": "0"}
    assert fail(s, "rate_limit", 1.0, 0, spent) is False
    assert s.pause.until == pytest.approx(clock.now + 1.0)
    assert s.counters.retried_429s == 0
    reason = s.stats()["slowed"]
    assert reason is not None and "paused" in reason


async def test_429s_with_budget_left_that_keep_coming_slow_the_key_down() -> None:
    # The provider's window is stricter than its headers: most answers are 429s.
    clock = FakeClock()
    s = state(clock, start=8)
    results = [fail(s, "rate_limit", 1.0, 0, BUDGET_LEFT) for _ in range(12)]
    assert results[0] is True and results[-1] is False
    assert s.pause.until > clock.now


async def test_slow_downs_are_said_in_words() -> None:
    clock = FakeClock()
    s = state(clock, start=8)
    fail(s, "rate_limit", None, 0, None)
    assert s.stats()["slowed"] == "concurrency halved 8 -> 4 after a 429"
    clock.now += 2.0
    fail(s, "rate_limit", 3.0, 0, None)
    assert s.stats()["slowed"] == "429 with Retry-After: paused 3.0s"
    clock.now += 4.0
    ok(s, 0, 1, False, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s"})
    assert s.stats()["slowed"] == "token budget used up (x-ratelimit-remaining 0): paused 2.0s"
    clock.now += 30.0  # an old reason is not shown
    assert s.stats()["slowed"] is None
