"""Prompt logprobs in `gauge serve`: scored prompts/s and server CPU per prompt.

Starts `gauge serve` (transformers engine, bundled gauge-tiny) in a subprocess on
127.0.0.1 and scores "What is A+B?" prompts with their answer (completions,
echo + logprobs 1 + max_tokens 0) in three ways:

  c1        one request, one prompt, at a time (no batching possible)
  c16       16 concurrent requests of one prompt each (the engine's prompt queue
            gathers the requests waiting together into one scoring call)
  list16    one request holding 16 token-id prompts (one batch per request)

Server CPU is the server process's user + system time (/proc/<pid>/stat) per
scored prompt: on a loaded machine it is steadier than the wall-time rate.

    .venv/bin/python bench/serve_prompt_logprobs_bench.py [--prompts 512]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import tiny_serve_process

TICKS = os.sysconf("SC_CLK_TCK")


tiny_server = tiny_serve_process


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def prompts(count: int) -> list[str]:
    rng = random.Random(9)
    out = []
    for _ in range(count):
        a, b = rng.randrange(100), rng.randrange(100)
        out.append(f"<|user|>What is {a}+{b}?<|assistant|>{a + b}")
    return out


async def main(count: int) -> None:
    import aiohttp

    texts = prompts(count)
    with tiny_server() as (root, pid):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

            async def post(path: str, body: dict[str, Any]) -> Any:
                async with http.post(f"{root}{path}", json=body) as reply:
                    data = await reply.json()
                    if reply.status != 200:
                        raise SystemExit(f"{path}: {reply.status} {data}")
                    return data

            ids = [(await post("/tokenize", {"prompt": t}))["tokens"] for t in texts]

            def score(prompt: Any) -> Any:
                body = {"model": "gauge-tiny", "prompt": prompt, "echo": True}
                return post("/v1/completions", {**body, "logprobs": 1, "max_tokens": 0})

            async def one_at_a_time() -> None:
                for t in texts:
                    await score(t)

            async def concurrent(width: int) -> None:
                queue = list(texts)

                async def worker() -> None:
                    while queue:
                        await score(queue.pop())

                await asyncio.gather(*(worker() for _ in range(width)))

            async def lists(size: int) -> None:
                for start in range(0, len(ids), size):
                    await score(ids[start : start + size])

            await score(texts[0])  # warm up
            rows = []
            for name, run in (
                ("c1", one_at_a_time),
                ("c16", lambda: concurrent(16)),
                ("list16", lambda: lists(16)),
            ):
                cpu0, wall0 = server_cpu(pid), time.perf_counter()
                await run()
                cpu, wall = server_cpu(pid) - cpu0, time.perf_counter() - wall0
                rows.append((name, count / wall, cpu / count * 1000))
    print(f"{count} prompts, echo + logprobs 1 + max_tokens 0, gauge-tiny on CPU")
    print(f"{'scenario':<8} {'prompts/s':>10} {'server CPU ms/prompt':>21}")
    for name, rate, cpu_ms in rows:
        print(f"{name:<8} {rate:>10.0f} {cpu_ms:>21.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    asyncio.run(main(parser.parse_args().prompts))
