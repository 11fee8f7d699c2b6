"""A yardstick for the rate-control latency scenario: a bare aiohttp closed loop.

200 workers post 2000 chat requests to the mock OpenAI server (0.2 s latency, its
own process), with no eval, no pipeline and no journal. Its wall / ideal
(N x latency / workers) is what aiohttp alone reaches on this machine, the
yardstick for `bench/rate_control.py latency-fixed` (gauge posts to plain-http
servers with its own lean HTTP/1.1 client, so it can do better than this).

    .venv/bin/python bench/latency_floor.py
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from _harness import start_mock_openai_server

N, WORKERS, LATENCY = 2000, 200, 0.2


async def closed_loop(url: str) -> None:
    """Run the loop and print wall / ideal and the attempt latencies."""
    latencies: list[float] = []
    todo = iter(range(N))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            for i in todo:
                started = time.perf_counter()
                body = {"model": "m", "messages": [{"role": "user", "content": f"What is {i}+1?"}]}
                async with session.post(f"{url}/chat/completions", json=body) as reply:
                    await reply.read()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        wall = time.perf_counter() - started
    latencies.sort()
    ideal = N * LATENCY / WORKERS
    print(
        f"bare aiohttp: wall {wall:.2f} s, ideal {ideal:.2f} s, wall/ideal {wall / ideal:.3f}x; "
        f"attempt mean {sum(latencies) / N * 1e3:.1f} ms, p50 {latencies[N // 2] * 1e3:.1f} ms, "
        f"max {latencies[-1] * 1e3:.1f} ms"
    )


def main() -> None:
    """Start the mock server, run the loop, stop the server."""
    process, url = start_mock_openai_server("--latency", str(LATENCY))
    try:
        asyncio.run(closed_loop(url))
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
