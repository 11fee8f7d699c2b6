"""Rate state shared by processes through a real Redis: one budget, one pause, leases.

Each test runs the mock OpenAI server in this process and the clients as separate
Python processes (worker.py), so nothing is shared but Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_process import RedisServer

from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.rate.shared_key import LEASE_TTL
from gauge.testing import OpenAIServer

WORKER = Path(__file__).with_name("worker.py")


class TimedServer(OpenAIServer):
    """The mock server, noting when it rejected requests and how many ran at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rejected_at: list[float] = []
        self.accepted_at: list[tuple[float, str]] = []
        self.running = 0
        self.peak = 0
        self.responder = self._accepted

    def _accepted(self, path: str, body: dict[str, Any]) -> None:
        self.accepted_at.append((time.monotonic(), str(body["messages"][-1]["content"])))

    def _too_many(self, kind: str, unit: str, now: float) -> Any:
        self.rejected_at.append(now)
        return super()._too_many(kind, unit, now)

    async def _handle(self, *args: Any) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            return await super()._handle(*args)
        finally:
            self.running -= 1


async def start_worker(
    base_url: str, redis_url: str, n: int, *extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        base_url,
        redis_url,
        str(n),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def result(process: asyncio.subprocess.Process, timeout: float = 60) -> dict[str, Any]:
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, err.decode()[-3000:]
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "no-headers"])
async def test_two_processes_share_one_budget(redis_server: RedisServer, headers: bool) -> None:
    limit, n = 40, 80  # 160 requests: 4 s at the limit
    async with TimedServer(rate_limit=limit, rate_headers=headers, latency=0.02) as server:
        workers = [
            await start_worker(server.url, redis_server.url, n, "--tag", tag) for tag in "ab"
        ]
        figures = [await result(w) for w in workers]
    assert [f["done"] for f in figures] == [n, n], figures
    assert all(f["live"] for f in figures)
    rejected = server.rejected_at
    if headers:
        # The first reply states the limit: one budget for both, nothing rejected.
        assert len(rejected) <= 2, rejected
    else:
        # Without headers the rate is measured from the first 429s (a burst that
        # crosses the limit), then both processes stay under it together.
        assert rejected, "no 429 to measure the limit from"
        late = [t for t in rejected if t > rejected[0] + 1.5]
        assert len(late) <= 4, (len(rejected), len(late))
    # Both processes sent their share: neither waited for the other to finish.
    ends = sorted(f["finished"] for f in figures)
    assert ends[1] - ends[0] < 0.5 * (2 * n / limit)


async def test_two_processes_share_one_token_budget(redis_server: RedisServer) -> None:
    # 2,400 tokens/min over 1 s windows: 40 tokens/s; each request is 4 (2 words, echoed).
    limit, n = 40, 25
    async with TimedServer(
        tokens_per_minute=60 * limit, token_window=1.0, rate_headers=True, latency=0.02
    ) as server:
        workers = [
            await start_worker(server.url, redis_server.url, n, "--tag", tag) for tag in "ab"
        ]
        figures = [await result(w) for w in workers]
    assert [f["done"] for f in figures] == [n, n], figures
    # The first wave goes before a reply states the limit (rejected in part, as in
    # one process); after it, both processes stay within one budget.
    first = min(f["started"] for f in figures)
    took = max(f["finished"] for f in figures) - first
    late = [t for t in server.rejected_at if t > server.rejected_at[0] + 1.5]
    assert len(late) <= 2, (len(server.rejected_at), len(late))
    assert took < 2 * n * 4 / limit * 2, took
    # One window in Redis holds the processes' sends of the last second (the last
    # process's, at least), each counted at 4 tokens: the calibration learned that
    # replies echo their prompts (the news that re-sizes sends: test_shared_window.py).
    client = redis.Redis.from_url(redis_server.url)
    [window] = client.keys("gauge:v1:*:window")
    members = [m.decode().split("|") for m in client.zrange(window, 0, -1)]
    assert members and {pid for pid, _, _ in members} <= {f["pid"] for f in figures}
    assert {tokens for _, _, tokens in members} == {"4"}


async def test_shared_concurrency_limit_holds_across_processes(redis_server: RedisServer) -> None:
    # max_connections is the key's limit: two processes hold 4 slots between them.
    async with TimedServer(latency=0.1) as server:
        workers = [
            await start_worker(server.url, redis_server.url, 40, "--max-connections", "4")
            for _ in range(2)
        ]
        figures = [await result(w) for w in workers]
    assert [f["done"] for f in figures] == [40, 40]
    assert server.peak <= 4, server.peak


async def test_a_429_retry_after_pauses_the_other_process(shared_on: RedisServer) -> None:
    async with TimedServer() as server:
        server.script(
            429,
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
            headers={"Retry-After": "3"},
        )
        model = get_model(
            "openai-api/test/mock-model", base_url=server.url, api_key="test-key", memoize=False
        )
        mine = asyncio.ensure_future(model.generate("a 0", config=GenerateConfig(max_retries=3)))
        while not server.requests:  # this process got its 429
            await asyncio.sleep(0.01)
        limited_at = time.monotonic()
        await asyncio.sleep(0.2)  # the pause is written to Redis
        other = await start_worker(server.url, shared_on.url, 3, "--tag", "b")
        figures = await result(other)
        await mine
        await model.close()
    assert figures["done"] == 3 and figures["stats"]["pauses"] >= 1
    first_b = min(t for t, text in server.accepted_at if text.startswith("b "))
    # The other process joined during the pause and sent nothing before it ended.
    assert first_b >= limited_at + 3 - 0.1, first_b - limited_at


async def test_leases_of_a_killed_process_expire(shared_on: RedisServer) -> None:
    async with TimedServer(hang_rate=1.0) as slow:  # no request is ever answered
        killed = await start_worker(slow.url, shared_on.url, 2, "--max-connections", "4", "--hold")
        assert killed.stdout is not None
        line = await asyncio.wait_for(killed.stdout.readline(), 30)
        assert line.strip() == b"READY"
        model = get_model(
            "openai-api/test/mock-model", base_url=slow.url, api_key="test-key", memoize=False
        )
        config = GenerateConfig(max_connections=4)
        calls = [asyncio.ensure_future(model.generate(f"c {i}", config=config)) for i in range(4)]
        limiter = model.key().slots.limiter
        await asyncio.sleep(1.0)
        assert limiter.in_flight == 2  # the other process holds the other half
        os.kill(killed.pid, signal.SIGKILL)
        await killed.wait()
        killed_at = time.monotonic()
        while limiter.in_flight < 4:
            assert time.monotonic() - killed_at < LEASE_TTL + 2, "leases did not expire"
            await asyncio.sleep(0.05)
        shared = model.key().budgets._key  # type: ignore[attr-defined]
        holders = shared_on.client().hgetall(shared.names.holders)
        assert list(holders) == [shared.pid.encode()]  # this process only
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await model.close()
