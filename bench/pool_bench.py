"""Endpoint pools: one model on two replicas of a busy inference server.

Each replica is gauge's mock OpenAI server in its own process with a 200 ms
latency and a capacity of 16 requests worked on at once (the rest queue, as on
an inference server with a fixed batch): one replica serves at most 80
requests/s. The client is an eval of N=1600 samples, 256 in flight, against
one replica and then against both (`base_url=a,b`). Target: two replicas give
>= 1.8x the throughput of one.

    .venv/bin/python bench/pool_bench.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from _harness import start_mock_openai_server

SERVER = ("--latency", "0.2", "--capacity", "16")


def run(base_url: str, n: int) -> tuple[float, int]:
    """Wall seconds and completed samples of one eval against `base_url`."""
    from gauge import Task, get_model
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.scorer import includes

    samples = [Sample(input=f"What is {i}+1?", target=f"{i}+1", id=i) for i in range(n)]
    task = Task(samples, scorer=includes(), name="pool")
    model = get_model("openai-api/bench/m", base_url=base_url, api_key="bench", memoize=False)

    async def main() -> int:
        with tempfile.TemporaryDirectory() as log_dir:
            [result] = await eval_async(
                task, model, log_dir=log_dir, display=False, max_samples=256
            )
        await model.close()
        return result.completed

    import aiohttp  # noqa: F401  (imported before the clock, as in the other benches)

    started = time.perf_counter()
    completed = asyncio.run(main())
    return time.perf_counter() - started, completed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1600
    servers = [start_mock_openai_server(*SERVER) for _ in range(2)]
    try:
        (_, a), (_, b) = servers
        one, done_one = run(a, n)
        two, done_two = run(f"{a},{b}", n)
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(10)
    print("| replicas | wall | samples/s | completed |")
    print("|---|---|---|---|")
    print(f"| 1 | {one:.2f} s | {n / one:.0f} | {done_one}/{n} |")
    print(f"| 2 | {two:.2f} s | {n / two:.0f} | {done_two}/{n} |")
    print(f"two replicas: {one / two:.2f}x the throughput of one (target >= 1.8x)")


if __name__ == "__main__":
    main()
