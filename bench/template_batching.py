"""Template providers: what batching buys, against examples/custom_api_server.py.

The example provider (examples/custom_api.py) sends 64 concurrent `generate`
callers' requests as batch_size 1 (64 calls in flight), 8 (8 calls) and 32 (2
calls), to the fake server in its own process, which waits `--latency` seconds
per HTTP call (a batch costs about what one request does, as on a GPU server).
Reported: requests/s, this process's CPU ms per request, and requests per call.

    .venv/bin/python bench/template_batching.py --requests 3000 --latency 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from _harness import measure, server_process

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONCURRENCY = 64


def serve(port: int, latency: float) -> None:
    """The example's fake server, waiting `latency` s per call (runs in a child process)."""
    sys.path.insert(0, str(EXAMPLES))
    from aiohttp import web
    from custom_api_server import make_app

    @web.middleware
    async def slow(request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(latency)
        return await handler(request)

    app = make_app()
    app.middlewares.append(slow)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def run(port: int, requests: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(EXAMPLES))
    import custom_api  # noqa: F401 (registers myapi/)

    from gauge.model import get_model

    rows = []
    for batch_size in (1, 8, 32):
        calls = CONCURRENCY // batch_size
        model = get_model(
            "myapi/sums",
            base_url=f"http://127.0.0.1:{port}",
            batch_size=batch_size,
            num_concurrent=calls,
            memoize=False,
        )
        batcher = model.api._batcher  # type: ignore[attr-defined]
        row = await measure(
            f"batch_size={batch_size} x {calls} calls",
            lambda m=model: m.generate("What is 2+3?"),
            requests,
            CONCURRENCY,
        )
        sizes = list(batcher.batch_sizes)[-(requests // (2 * batch_size)) :]
        row["per_call"] = sum(sizes) / max(1, len(sizes))
        rows.append(row)
        await model.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.02, help="server seconds per call")
    args = parser.parse_args()
    with server_process(serve, args.latency) as port:
        rows = asyncio.run(run(port, args.requests))
    base = rows[0]
    print("| scenario | requests/s | client CPU ms/request | requests per call | vs batch 1 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['name']} | {row['calls_s']:.0f} | {row['cpu_ms']:.3f} | "
            f"{row['per_call']:.1f} | {float(row['calls_s']) / float(base['calls_s']):.2f}x "
            f"req/s, {float(base['cpu_ms']) / float(row['cpu_ms']):.2f}x less CPU |"
        )


if __name__ == "__main__":
    main()
