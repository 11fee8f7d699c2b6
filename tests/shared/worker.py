"""One process of the shared-state tests: requests through one connection key shared
through Redis, then its figures as one JSON line on stdout.

    python worker.py BASE_URL REDIS_URL N [--max-connections K] [--hold] ...

With --hold it prints READY once N requests are in flight, then waits (to be killed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("redis")
    parser.add_argument("n", type=int)
    parser.add_argument("--max-connections", type=int)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--tag", default="w")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--hold", action="store_true")
    return parser.parse_args()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from gauge.model.config import GenerateConfig
    from gauge.model.factory import get_model

    model = get_model(
        "openai-api/test/mock-model", base_url=args.base_url, api_key=args.api_key, memoize=False
    )
    config = GenerateConfig(max_retries=10, max_connections=args.max_connections)
    places = asyncio.Semaphore(args.in_flight)
    errors: list[str] = []
    sent: list[float] = []

    async def one(i: int) -> None:
        async with places:
            try:
                await model.generate(f"{args.tag} {i}", config=config)
                sent.append(time.time())
            except Exception as ex:
                errors.append(f"{type(ex).__name__}: {ex}")

    started = time.time()
    tasks = [asyncio.ensure_future(one(i)) for i in range(args.n)]
    if args.hold:
        key = model.key()
        while key.slots.limiter.in_flight < args.n:
            await asyncio.sleep(0.01)
        print("READY", flush=True)
        await asyncio.Event().wait()
    await asyncio.gather(*tasks)
    stats = model.rate_stats()
    key = model.key()
    shared_key = getattr(key.budgets, "_key", None)
    live = bool(shared_key and shared_key.live)
    await model.close()
    return {
        "started": started,
        "finished": time.time(),
        "done": len(sent),
        "errors": errors,
        "stats": stats,
        "live": live,
        "pid": shared_key.pid if shared_key else None,
    }


def main() -> None:
    args = parse()
    from gauge.model import shared

    shared.use(args.redis)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
