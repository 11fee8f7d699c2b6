"""Loglikelihood over OpenAI-compatible endpoints: throughput and client CPU per pair.

Starts `gauge serve` (transformers engine, bundled gauge-tiny) in a subprocess on
127.0.0.1 and scores the same multiple-choice pairs (4 candidate sums per
"What is A+B?") through:

  hf            hf/gauge-tiny in process (the reference; its CPU is the model's)
  tok-b1        openai-api-completions, token ids from the server's /tokenize, batch_size 1
  tok-b16       the same with batch_size 16 (16 prompts per HTTP request)
  local-b16     token ids from a local tokenizer (-M tokenizer=gauge-tiny dir), batch_size 16
  chat          openai-api (chat) with vLLM's prompt_logprobs, one pair per request

One-time setup (model load, /tokenize probe) is excluded by a warm-up call.
Client CPU is this process's time.process_time per pair (the server's CPU is in
its own process), so a loaded machine stretches the wall times more than it does
these numbers. Every served run is checked against hf (max |diff| in nats).

    .venv/bin/python bench/openai_scoring_bench.py [--questions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import tiny_serve_process

TINY = Path(__file__).resolve().parents[1] / "src" / "gauge" / "assets" / "gauge-tiny"


@contextmanager
def tiny_server() -> Iterator[str]:
    """`gauge serve` on gauge-tiny in a subprocess; its base URL."""
    with tiny_serve_process() as (root, _pid):
        yield f"{root}/v1"


def pairs(questions: int) -> list[tuple[str, str]]:
    rng = random.Random(9)
    out = []
    for _ in range(questions):
        a, b = rng.randrange(100), rng.randrange(100)
        context = f"<|user|>What is {a}+{b}?<|assistant|>"
        for delta in (0, 1, -10, 11):
            out.append((context, str(max(0, a + b + delta))))
    return out


async def run(name: str, model_name: str, items: list[tuple[str, str]], **args: Any) -> Any:
    from gauge import get_model

    model = get_model(model_name, memoize=False, **args)
    try:
        # One-time setup (loading the model, the /tokenize probe, the pool) is not timed.
        await model.loglikelihood(items[:1])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = await model.loglikelihood(items)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await model.api.close()
    return name, results, len(items) / wall, cpu / len(items) * 1e6


async def main(questions: int) -> None:
    items = pairs(questions)
    chat_items = [(c.removeprefix("<|user|>").split("<|")[0], a) for c, a in items]
    rows = []
    reference = await run("hf", "hf/gauge-tiny", items)
    rows.append((*reference, 0.0))
    with tiny_server() as url:
        completions = "openai-api-completions/bench/gauge-tiny"
        for name, args in (
            ("tok-b1", {"batch_size": 1}),
            ("tok-b16", {"batch_size": 16}),
            ("local-b16", {"batch_size": 16, "tokenizer": str(TINY)}),
        ):
            result = await run(name, completions, items, base_url=url, **args)
            diff = max(abs(a[0] - b[0]) for a, b in zip(reference[1], result[1], strict=True))
            rows.append((*result, diff))
        result = await run("chat", "openai-api/bench/gauge-tiny", chat_items, base_url=url)
        diff = max(abs(a[0] - b[0]) for a, b in zip(reference[1], result[1], strict=True))
        rows.append((*result, diff))
    print(f"{len(items)} pairs ({questions} questions x 4 choices)")
    print(f"{'scenario':<10} {'pairs/s':>9} {'client CPU us/pair':>19} {'max |diff| vs hf':>17}")
    for name, _, rate, cpu_us, diff in rows:
        print(f"{name:<10} {rate:>9.0f} {cpu_us:>19.0f} {diff:>17.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    asyncio.run(main(parser.parse_args().questions))
