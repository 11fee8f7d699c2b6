"""Throughput and client CPU of the OpenAI-compatible wire path, beside two baselines.

    .venv/bin/python bench/openai_throughput.py [--requests 20000] [--concurrency 64]

Starts gauge's mock OpenAI-compatible server in a separate process (zero latency
unless --latency is given; no validation), then in this one process measures, at
the same concurrency and against the same server:

  raw      aiohttp + orjson: one pooled session, POST, read, parse (the floor)
  gauge    Model.generate through the whole pipeline (openai-api/<service>/<model>)
  openai   the official SDK's AsyncOpenAI (max_retries=0)

Each client gets a warm-up, then `--requests` calls from `--concurrency` workers.
calls/s is wall-clock; CPU/call is this process's CPU time (user + system) over
the timed calls, so it counts only client work. Order is raw, gauge, openai,
repeated `--rounds` times; the best round of each client is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from _harness import start_mock_openai_server

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]


@dataclass
class Result:
    name: str
    calls: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.calls


async def drive(call: Callable[[], Awaitable[object]], total: int, concurrency: int) -> None:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(
    name: str, call: Callable[[], Awaitable[object]], total: int, concurrency: int
) -> Result:
    await drive(call, min(2000, total), concurrency)  # warm-up: connections, caches
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await drive(call, total, concurrency)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return Result(name, total, seconds, cpu)


async def raw_client(
    url: str,
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    endpoint = f"{url}/chat/completions"
    payload = orjson.dumps({"model": "mock-model", "messages": MESSAGES})
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def call() -> object:
        async with session.post(endpoint, data=payload, headers=headers) as response:
            body = orjson.loads(await response.read())
        return body["choices"][0]["message"]["content"]

    return call, session.close


async def gauge_client(
    url: str, concurrency: int
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    from gauge.model import GenerateConfig, get_model

    model = get_model(
        "openai-api/bench/mock-model",
        base_url=url,
        api_key="bench",
        config=GenerateConfig(max_connections=concurrency),
    )
    prompt = MESSAGES[0]["content"]

    async def call() -> object:
        return (await model.generate(prompt)).completion

    return call, model.close


async def openai_client(
    url: str,
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    from openai import AsyncOpenAI

    # The SDK's default pool allows 1000 connections, above any concurrency used here.
    client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)

    async def call() -> object:
        completion = await client.chat.completions.create(
            model="mock-model",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        return completion.choices[0].message.content

    return call, client.close


async def run(args: argparse.Namespace, url: str) -> list[Result]:
    factories = {
        "raw": lambda: raw_client(url),
        "gauge": lambda: gauge_client(url, args.concurrency),
        "openai": lambda: openai_client(url),
    }
    best: dict[str, Result] = {}
    for _ in range(args.rounds):
        for name in args.clients:
            call, close = await factories[name]()
            try:
                result = await measure(name, call, args.requests, args.concurrency)
            finally:
                await close()
            if name not in best or result.rate > best[name].rate:
                best[name] = result
    return [best[name] for name in args.clients]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-workers", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="server seconds per request")
    parser.add_argument("--clients", nargs="+", default=["raw", "gauge", "openai"])
    args = parser.parse_args()
    server, url = start_mock_openai_server(
        "--workers", str(args.server_workers), "--latency", str(args.latency)
    )
    try:
        results = asyncio.run(run(args, url))
    finally:
        server.terminate()
        server.wait(timeout=10)
    raw = next((r for r in results if r.name == "raw"), None)
    print(
        f"C={args.concurrency}, {args.requests} calls per client, best of {args.rounds} rounds, "
        f"server workers={args.server_workers}, latency={args.latency:g}s, cpus={os.cpu_count()}"
    )
    print(f"{'client':8} {'calls/s':>10} {'CPU ms/call':>12} {'vs raw':>8}")
    for r in results:
        ratio = f"{r.rate / raw.rate:.2f}x" if raw else "-"
        print(f"{r.name:8} {r.rate:10.0f} {r.cpu_ms:12.3f} {ratio:>8}")


if __name__ == "__main__":
    main()
