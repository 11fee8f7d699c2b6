"""KeyState: key-wide pauses, budgets learned from headers, reconciliation, stats."""

from __future__ import annotations

import asyncio

import pytest

from gauge.model.output import ModelUsage
from gauge.model.rate import key_stats
from gauge.model.rate.headers import TOKEN_SAFETY
from gauge.model.rate.inference import PROBE_EVERY
from gauge.model.rate.keys import (
    BURST_HITS,
    RECOVER_AFTER,
    TOKEN_RECHECK,
    TOKEN_RECHECK_FAR,
    KeyState,
    key_state,
)


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


def state(clock: FakeClock, key: str = "p|u|k|m", start: int = 8) -> KeyState:
    return key_state(key, start, clock)


async def test_rate_limit_pauses_the_whole_key_and_cuts_concurrency() -> None:
    clock = FakeClock()
    s = state(clock, start=8)
    s.configure(None, None, None)
    s.failed("rate_limit", 2.5, 0, None)
    assert s.limiter.limit == 4 and s.rate_limit_hits == 1 and s.gated
    # Every caller on the key now waits out the pause before taking a slot.
    await asyncio.gather(s.admit(0, clock.sleep), s.admit(0, clock.sleep))
    assert clock.sleeps == [2.5] and clock.now == 102.5
    await s.admit(0, clock.sleep)
    assert not s.gated and clock.sleeps == [2.5]


async def test_transient_failures_do_not_pause_or_cut() -> None:
    clock = FakeClock()
    s = state(clock)
    s.failed("transient", 3.0, 0, None)
    assert s.limiter.limit == 8 and s.paused_until == 0.0 and s.failures == 1


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
    s.succeeded(
        0, 10, False, {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "6000"}
    )
    assert s.rpm is not None and s.rpm.rate == pytest.approx(600 * 0.97 / 60)
    assert s.tpm is not None and s.tpm.rate == pytest.approx(6000 * TOKEN_SAFETY / 60)
    s.configure(None, 120.0, None)
    assert s.rpm.rate == pytest.approx(2.0)
    assert s.stats()["rpm"] == 120.0


async def test_exhausted_budget_in_headers_pauses_until_reset() -> None:
    clock = FakeClock()
    s = state(clock)
    s.succeeded(
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
    bucket = s.tpm
    assert bucket is not None
    # Two more reservations queue behind each other ...
    first = bucket.ticket(505, clock.now)
    second = bucket.ticket(505, clock.now)
    assert bucket.wait_for(first, clock.now) == pytest.approx(5.05)
    assert bucket.wait_for(second, clock.now) == pytest.approx(10.1)
    # ... and a reply that used 105 of its 505 moves both up by 400 tokens.
    s.succeeded(505, 105, False, None)
    assert bucket.wait_for(first, clock.now) == pytest.approx(1.05)
    assert bucket.wait_for(second, clock.now) == pytest.approx(6.1)
    # A rejected request was not charged by the provider: its reservation returns too.
    s.failed("rate_limit", None, 505, None)
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
    s.succeeded(0, 30, True, None)
    assert s.limiter.limit == 3  # fixed: saturated successes do not grow it
    clock.now += 30
    s.succeeded(0, 30, True, None)
    stats = s.stats()
    assert stats["key"] == "openai|https://host/v1|abc|m"  # URL credentials dropped
    assert stats["concurrency"] == 3 and not stats["adaptive"]
    assert stats["requests"] == 2 and stats["tokens"] == 60
    assert stats["tokens_per_minute"] == pytest.approx(120.0)  # 60 tokens over 30 s
    assert any(k["key"] == stats["key"] and k["tokens"] == 60 for k in key_stats())
    s.configure(None, None, None)
    s.succeeded(0, 1, True, None)
    assert s.limiter.limit == 4 and s.stats()["adaptive"]


async def test_without_headers_the_rate_is_measured_from_what_was_accepted() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    sent = []
    for _ in range(30):  # 30 sent within the last second and accepted ...
        clock.now += 0.02
        sent.append(clock.now)
        s.succeeded(0, 1, True, None, sent_at=clock.now - 0.05)
    # ... then a 429 with Retry-After: 1 for a request sent now.
    s.failed("rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.inferred_rpm and s.learned_rpm == 30 * 60
    assert s.rpm is not None and s.rpm.rate == pytest.approx(30 * 0.97)
    assert s.limiter.limit == 47  # 64 + 30 in slow start, then halved: no budget paced it yet
    assert s.paused_until == pytest.approx(clock.now + 1.0)  # the whole Retry-After
    # Requests sent before the 429 and still in flight were accepted too: the
    # measure grows as they come back; later ones do not count.
    for _ in range(10):
        s.succeeded(0, 1, False, None, sent_at=clock.now - 0.01)
    s.succeeded(0, 1, False, None, sent_at=clock.now + 0.5)
    assert s.learned_rpm == 40 * 60 and s.rpm.rate == pytest.approx(40 * 0.97)


async def test_a_later_episode_measures_again_from_a_floor() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    for _ in range(50):
        clock.now += 0.02
        s.succeeded(0, 1, False, None, sent_at=clock.now)
    s.failed("rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.learned_rpm == 50 * 60
    clock.now += 5.0  # 20 accepted in the last second, 30 still in flight
    for _ in range(30):
        await s.limiter.acquire()
    for _ in range(20):
        clock.now += 0.02
        s.succeeded(0, 1, False, None, sent_at=clock.now)
    limit = s.limiter.limit
    s.failed("rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.learned_rpm == pytest.approx(50 * 60 * 0.9)  # not 20/s while replies come in
    assert s.limiter.limit == limit  # a budget paces the key: concurrency is not cut
    # A paced key pauses for one request's worth of budget, not the whole Retry-After.
    assert s.paused_until == pytest.approx(clock.now + 1 / (45 * 0.97))
    for _ in range(28):
        s.succeeded(0, 1, False, None, sent_at=clock.now - 0.5)
    assert s.learned_rpm == 48 * 60


async def test_pause_holds_the_buckets_so_no_burst_follows_it() -> None:
    clock = FakeClock()
    s = state(clock)
    s.configure(None, 600.0, None)  # 10/s
    await s.admit(0, clock.sleep)
    s.pause(2.0, clock.now)
    # Nothing was earned during the pause: after it, requests are paced again,
    # not released all at once.
    for _ in range(3):
        await s.admit(0, clock.sleep)
    assert clock.now == pytest.approx(100.0 + 2.0 + 0.2 + 0.1, abs=0.01)


async def test_rate_limit_within_a_learned_budget_lowers_the_margin_not_concurrency() -> None:
    clock = FakeClock()
    s = state(clock, start=16)
    s.succeeded(0, 1, False, {"x-ratelimit-limit-tokens": "60000"})
    assert s.tpm is not None and s.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY)
    s.failed("rate_limit", 1.0, 0, None)
    assert s.limiter.limit == 16  # budget-bound: slots are not the problem
    assert s.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY * 0.97)
    s.failed("rate_limit", 1.0, 0, None)  # same episode (cooldown): one signal
    assert s.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY * 0.97)


async def test_the_margin_recovers_after_a_calm_spell() -> None:
    clock = FakeClock()
    s = state(clock, start=16)
    s.succeeded(0, 1, False, {"x-ratelimit-limit-tokens": "60000"})
    s.failed("rate_limit", 1.0, 0, None)
    assert s.margin == pytest.approx(0.97)
    clock.now += RECOVER_AFTER - 0.1
    s.succeeded(0, 1, False, None)
    assert s.margin == pytest.approx(0.97)
    clock.now += 0.2
    s.succeeded(0, 1, False, None)
    assert s.margin == 1.0 and s.tpm is not None
    assert s.tpm.rate == pytest.approx(1000 * TOKEN_SAFETY)


async def test_replies_sent_before_the_budget_existed_are_charged_on_return() -> None:
    clock = FakeClock()
    s = state(clock)
    s.succeeded(0, 100, False, {"x-ratelimit-limit-tokens": "60000"})
    bucket = s.tpm
    assert bucket is not None
    before = bucket.tokens
    s.succeeded(0, 300, False, None)  # reserved nothing: it was sent before the budget
    assert bucket.tokens == pytest.approx(before - 300)


async def test_reservations_calibrate_to_real_prompt_and_reply_sizes() -> None:
    clock = FakeClock()
    s = state(clock)
    assert s.reservation(100, 400) == 500  # nothing learned yet: estimate + max_tokens
    for _ in range(200):  # prompts cost 80 % of the estimate, replies 50 tokens
        s.succeeded(
            0,
            130,
            False,
            None,
            usage=ModelUsage(input_tokens=80, output_tokens=50, total_tokens=130),
            guess=100,
        )
    assert s.reservation(100, 400) == pytest.approx(130, abs=1)
    assert s.reservation(100, 20) == 100  # never more reply than max_tokens allows
    assert s.reservation(100, None) == 80  # no max_tokens: reply not reserved


async def test_the_window_counts_replies_at_their_95th_percentile_once_known() -> None:
    clock = FakeClock()
    s = state(clock)
    assert s.most(100, 400) == 500  # nothing known: the whole max_tokens
    for output in range(1, 101):  # replies of 1..100 tokens
        s.succeeded(
            0,
            100 + output,
            False,
            None,
            usage=ModelUsage(input_tokens=100, output_tokens=output, total_tokens=100 + output),
            guess=100,
        )
    assert s.most(100, 400) == 100 + 95
    assert s.most(100, 50) == 150  # never above max_tokens


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

    async def send(self, s: KeyState, retry_after: float | None = None) -> None:
        await s.admit(0, self.clock.sleep)
        now = self.clock.now
        recent = sum(1 for t in self.accepted[-(self.limit or 0) - 1 :] if t > now - 1.0)
        storm = any(a <= now < b for a, b in self.storms)
        if storm or (self.limit is not None and recent >= self.limit):
            self.rejected += 1
            s.failed("rate_limit", retry_after, 0, None, sent_at=now)
        else:
            self.accepted.append(now)
            s.succeeded(0, 1, False, None, sent_at=now)

    def rate(self, since: float) -> float:
        """Accepted requests per second from `since` to now."""
        return sum(1 for t in self.accepted if t >= since) / (self.clock.now - since)


def young_estimate(clock: FakeClock, s: KeyState) -> None:
    """A 429 storm 0.5 s into a run: only 10 requests were sent so far."""
    for _ in range(10):
        clock.now += 0.05
        s.succeeded(0, 1, False, None, sent_at=clock.now)
    s.failed("rate_limit", 0.5, 0, None, sent_at=clock.now)
    assert s.learned_rpm == 10 * 60  # the measure: far below what the provider takes


async def test_an_under_estimate_recovers_within_a_bounded_number_of_probes() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    young_estimate(clock, s)
    provider = WindowedProvider(clock, None)  # the storm is over: no limit at all
    start = clock.now
    budgets = [s.learned_rpm]
    while clock.now < start + 5.0:
        await provider.send(s)
        if s.learned_rpm != budgets[-1]:
            budgets.append(s.learned_rpm)
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
        s.succeeded(0, 1, False, None, sent_at=clock.now)
    s.failed("rate_limit", 1.0, 0, None, sent_at=clock.now)
    assert s.learned_rpm == 20 * 60
    provider = WindowedProvider(clock, 20)
    provider.accepted = [clock.now - 0.01] * 20
    start = clock.now
    while clock.now < start + 25.0:
        await provider.send(s, retry_after=1.0)
    # One probe crossed the limit; its 429 measured the limit where it was, which
    # confirms it: the next probe comes only PROBE_EVERY later.
    assert provider.rejected == 1
    assert s.learned_rpm == pytest.approx(20 * 60, rel=0.05)
    assert provider.rate(start + 5.0) == pytest.approx(20 * 0.97, rel=0.03)
    clock.now += PROBE_EVERY
    while clock.now < start + 25.0 + PROBE_EVERY + 5.0:
        await provider.send(s, retry_after=1.0)
    assert 2 <= provider.rejected <= 3  # one slow probe step, found again
    assert s.learned_rpm == pytest.approx(20 * 60, rel=0.05)


async def test_a_storm_while_the_key_sends_below_its_budget_is_a_pause() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    young_estimate(clock, s)
    s.learned_rpm = 100 * 60  # as if probed up to 100/s; the key sends 10/s
    s._rebudget()
    for _ in range(10):
        clock.now += 0.1
        s.succeeded(0, 1, False, None, sent_at=clock.now)
    clock.now += 2.0
    s.failed("rate_limit", 0.5, 0, None, sent_at=clock.now)
    assert s.learned_rpm == 100 * 60  # the budget stays: a brief overload
    assert s.paused_until == pytest.approx(clock.now + 1 / 97)
    # Another episode within a window after that pause: the limit is lower.
    clock.now += 1.2
    for _ in range(10):
        clock.now += 0.01
        s.succeeded(0, 1, False, None, sent_at=clock.now)
    s.failed("rate_limit", 0.5, 0, None, sent_at=clock.now)
    assert s.learned_rpm == pytest.approx(10 * 60)


async def test_a_burst_of_429s_does_not_confirm_a_limit() -> None:
    clock = FakeClock()
    s = state(clock, start=64)
    young_estimate(clock, s)
    provider = WindowedProvider(clock, None, storms=((103.0, 104.0),))
    start = clock.now
    while clock.now < 103.0:
        await provider.send(s)
    budget = s.learned_rpm
    assert budget is not None and budget > 10 * 60
    while clock.now < 107.0:
        await provider.send(s)
    # The storm hit while the key sent at its budget: the rate was measured
    # there, but a whole burst of 429s is an overload, so probing went on.
    assert provider.rejected > BURST_HITS
    assert s.learned_rpm is not None and s.learned_rpm > budget
    assert provider.rate(start) > 0


def _reply(s: KeyState, prompt: int, output: int, guess: int) -> None:
    usage = ModelUsage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)
    s.succeeded(0, prompt + output, False, None, usage=usage, guess=guess)


async def test_replies_that_grow_with_the_prompt_are_charged_by_the_prompt() -> None:
    # An echo, a translation, a summary: the reply is as long as the prompt. One
    # average reply would charge a short prompt 5x its cost and a long one half.
    s = state(FakeClock(), key="p|u|k|echo")
    for size in range(10, 310, 3):
        _reply(s, size, size, guess=size)
    assert s.reservation(20, 400) == pytest.approx(40, abs=2)
    assert s.reservation(300, 400) == pytest.approx(600, abs=2)
    assert s.most(20, 400) == pytest.approx(40, abs=2)  # no misses: nothing added
    assert s.most(300, 250) == 550  # still never above max_tokens


async def test_a_reply_that_shrinks_with_the_prompt_is_charged_its_average() -> None:
    s = state(FakeClock(), key="p|u|k|shrink")
    for size in range(10, 310, 3):
        _reply(s, size, 320 - size, guess=size)
    # A negative slope would charge long prompts less than their replies may cost.
    average = sum(320 - size for size in range(10, 310, 3)) / len(range(10, 310, 3))
    assert s.reservation(300, 400) == pytest.approx(300 + average, abs=2)


async def test_the_first_replies_calibrate_at_once() -> None:
    s = state(FakeClock(), key="p|u|k|first")
    _reply(s, 80, 50, guess=100)
    # Not a moving average from 1.0 (which would still say ~99 after one reply).
    assert s.reservation(100, None) == 80
    assert s.reservation(100, 400) == 130


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
