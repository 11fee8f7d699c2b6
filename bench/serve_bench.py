"""`gauge serve` overhead with the mock engine: added latency, time to first token, overload.

    .venv/bin/python bench/serve_bench.py [--requests 1600] [--concurrency 32] [--latency 0.01]

Starts `gauge serve --engine mock` in a subprocess on 127.0.0.1 (one per
scenario) and measures from this process:

  added latency  `--concurrency` workers send `--requests` chat requests; each
                 request's latency is compared with the same number of calls
                 made straight to a MockEngine in this process at the same
                 concurrency (same `--latency`). Reported: p50 and p99 of both,
                 the difference (the server's added latency, client HTTP work
                 included), the server's and the client's CPU per request, and
                 the same against a bare aiohttp server with the same sleep
                 (the floor any Python HTTP server pays on this machine).
                 The client is a light one by default: one keep-alive asyncio
                 stream per worker sending a pre-built HTTP/1.1 request and
                 reading Content-Length bytes (~0.035 ms CPU a request, vs
                 ~0.11 ms for an aiohttp client). On a 2-core machine the
                 client's CPU queues with the server's, so an aiohttp client
                 measures itself as much as the server; its figure is printed
                 too (`--aiohttp-client` to use it for the main figure).
  streaming TTFT streamed chat with 16 tokens, `--latency` before the first and
                 5 ms between tokens: time to the first content chunk vs the
                 whole stream, over 200 requests at concurrency 32.
  tiny TTFT      (--tiny) the bundled model behind the transformers engine: a
                 64-token streamed completion (EOS banned), time to first
                 chunk vs the whole stream, 20 requests one at a time.
  overload       500 requests at once against MAX_CONCURRENCY=256 (mock latency
                 0.2 s): every answer must be 200 or an intended 429 with
                 Retry-After; then 500 at once with MAX_CONCURRENCY=1000: all 200.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import aiohttp
import orjson
from _harness import free_port, wait_for_health

from gauge.model.messages import ChatMessageUser
from gauge.serve.engines.base import EngineRequest, SamplingParams
from gauge.serve.engines.mock import MockEngine

PROMPT = (
    "one two three four five six seven eight "
    + "nine ten eleven twelve thirteen fourteen fifteen sixteen"
)


PIDS: dict[str, int] = {}


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process `pid` (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The floor: a bare aiohttp server that sleeps the same latency and sends a fixed body.
FLOOR = """
import asyncio, sys, orjson
from aiohttp import web
latency = float(sys.argv[2])
reply = orjson.dumps({"choices": [{"message": {"content": sys.argv[3]}}]})
async def chat(request):
    await request.read()
    await asyncio.sleep(latency)
    return web.Response(body=reply, content_type="application/json")
async def health(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


@contextmanager
def server(floor: bool = False, **settings: str) -> Iterator[str]:
    """The server's base URL; its process id is in PIDS[url] while it runs."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env.update({"DISABLE_LOG_STATS": "1", "DISABLE_LOG_REQUESTS": "1"})
    env.update({k.upper(): v for k, v in settings.items()})
    engine = settings.pop("engine", "mock")
    cmd = [sys.executable, "-m", "gauge.cli.main", "serve", "--engine", engine, "--port", str(port)]
    if floor:
        cmd = [sys.executable, "-c", FLOOR, str(port), settings["mock_latency"], PROMPT]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(root, timeout=30, interval=0.05)
        PIDS[f"{root}/v1"] = proc.pid
        yield f"{root}/v1"
    finally:
        PIDS.pop(f"{root}/v1", None)
        proc.terminate()
        proc.wait(timeout=15)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(
    call: Callable[[], Awaitable[float]], total: int, workers: int
) -> list[float]:
    """`workers` loops calling `call` until `total` calls are done; each call's latency."""
    left = total
    times: list[float] = []

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            times.append(await call())

    await asyncio.gather(*(loop() for _ in range(workers)))
    return times


async def in_process(latency: float, total: int, workers: int) -> list[float]:
    engine = MockEngine("mock", latency=latency)

    async def call() -> float:
        began = time.perf_counter()
        request = EngineRequest(SamplingParams(), messages=[ChatMessageUser(content=PROMPT)])
        await engine.generate(request)
        return time.perf_counter() - began

    await closed_loop(call, 64, workers)  # warm-up
    return await closed_loop(call, total, workers)


async def over_http(url: str, total: int, workers: int) -> list[float]:
    body = orjson.dumps({"model": "gauge-tiny", "messages": [{"role": "user", "content": PROMPT}]})
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def call() -> float:
            began = time.perf_counter()
            async with session.post(f"{url}/chat/completions", data=body, headers=headers) as r:
                data = orjson.loads(await r.read())
                if r.status != 200 or data["choices"][0]["message"]["content"] != PROMPT:
                    raise RuntimeError(f"unexpected reply {r.status}: {data}")
            return time.perf_counter() - began

        await closed_loop(call, 64, workers)  # warm-up
        return await closed_loop(call, total, workers)


async def light_http(url: str, total: int, workers: int) -> list[float]:
    """Like `over_http`, with one raw keep-alive connection per worker (see module doc)."""
    address = url.split("//", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    body = orjson.dumps({"model": "gauge-tiny", "messages": [{"role": "user", "content": PROMPT}]})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(workers)]
    free = list(connections)

    async def call() -> float:
        reader, writer = free.pop()
        began = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"reply without Content-Length: {head!r}")
        data = await reader.readexactly(int(head[at + 17 : head.index(b"\r\n", at + 2)]))
        elapsed = time.perf_counter() - began
        free.append((reader, writer))
        if head[9:12] != b"200" or orjson.loads(data)["choices"][0]["message"]["content"] != PROMPT:
            raise RuntimeError(f"unexpected reply {head[:12]!r}: {data[:200]!r}")
        return elapsed

    try:
        await closed_loop(call, 64, workers)  # warm-up
        return await closed_loop(call, total, workers)
    finally:
        for _, writer in connections:
            writer.close()


def measured(
    client: Callable[[str, int, int], Awaitable[list[float]]], url: str, total: int, workers: int
) -> tuple[list[float], float, float | None]:
    """(latencies, client CPU ms per request, server CPU ms per request or None)."""
    pid = PIDS.get(url)
    before = None if pid is None else process_cpu(pid)
    cpu = time.process_time()
    times = asyncio.run(client(url, total, workers))
    client_ms = (time.process_time() - cpu) / (total + 64) * 1e3
    after = None if pid is None else process_cpu(pid)
    server_ms = None
    if before is not None and after is not None:
        server_ms = (after - before) / (total + 64) * 1e3
    return times, client_ms, server_ms


async def streaming(url: str, total: int, workers: int) -> tuple[list[float], list[float]]:
    body = orjson.dumps(
        {"model": "gauge-tiny", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    )
    firsts: list[float] = []
    wholes: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def call() -> float:
            began = time.perf_counter()
            first = None
            text = ""
            async with session.post(f"{url}/chat/completions", data=body) as reply:
                async for line in reply.content:
                    if not line.startswith(b"data: {"):
                        continue
                    delta = orjson.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta and first is None:
                        first = time.perf_counter() - began
                    text += delta or ""
            if text != PROMPT or first is None:
                raise RuntimeError(f"bad stream: {text!r}")
            firsts.append(first)
            wholes.append(time.perf_counter() - began)
            return first

        await closed_loop(call, total, workers)
    return firsts, wholes


async def tiny_stream(url: str, total: int) -> tuple[list[float], list[float]]:
    body = orjson.dumps(
        {
            "model": "gauge-tiny",
            "prompt": "12+30=42 7+8=15 20+",
            "max_tokens": 64,
            "logit_bias": {"2": -100},
            "stream": True,
        }
    )
    firsts: list[float] = []
    wholes: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(total):
            began = time.perf_counter()
            first = None
            async with session.post(f"{url}/completions", data=body) as reply:
                async for line in reply.content:
                    if first is None and line.startswith(b"data: {"):
                        first = time.perf_counter() - began
            assert first is not None
            firsts.append(first)
            wholes.append(time.perf_counter() - began)
    return firsts, wholes


async def burst(url: str, count: int) -> Counter[str]:
    body = orjson.dumps({"model": "gauge-tiny", "messages": [{"role": "user", "content": "hi"}]})
    outcome: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(60)) as s:

        async def one() -> None:
            try:
                async with s.post(f"{url}/chat/completions", data=body) as reply:
                    await reply.read()
                    if reply.status == 429 and reply.headers.get("Retry-After") == "1":
                        outcome["429 (intended)"] += 1
                    else:
                        outcome[str(reply.status)] += 1
            except Exception as ex:
                outcome[f"error {type(ex).__name__}"] += 1

        await asyncio.gather(*(one() for _ in range(count)))
    return outcome


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.01, help="mock engine latency (s)")
    parser.add_argument("--tiny", action="store_true", help="also stream from gauge-tiny")
    parser.add_argument(
        "--aiohttp-client", action="store_true", help="measure added latency with aiohttp"
    )
    args = parser.parse_args()
    if args.tiny:
        with server(engine="transformers") as url:
            firsts, wholes = asyncio.run(tiny_stream(url, 20))
        print(
            f"gauge-tiny streaming, 64 tokens: TTFT p50 {ms(pct(firsts, 0.5))}; "
            f"whole stream p50 {ms(pct(wholes, 0.5))}"
        )

    main_client, other_client = light_http, over_http
    if args.aiohttp_client:
        main_client, other_client = over_http, light_http
    n, c = args.requests, args.concurrency
    local = asyncio.run(in_process(args.latency, n, c))
    with server(floor=True, mock_latency=str(args.latency)) as url:
        bare, bare_client, bare_server = measured(main_client, url, n, c)
    with server(mock_latency=str(args.latency)) as url:
        served, client_cpu, server_cpu = measured(main_client, url, n, c)
        other, other_cpu, _ = measured(other_client, url, n, c)
    print(
        f"added latency at concurrency {c}, {n} requests, mock latency {ms(args.latency)}, "
        f"{main_client.__name__} client; load average {os.getloadavg()[0]:.2f}:"
    )
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        a, b = pct(local, q), pct(served, q)
        f = pct(bare, q)
        print(
            f"  {name}: in-process {ms(a)}  served {ms(b)}  added {ms(b - a)}"
            f"  (bare aiohttp server floor {ms(f)}, added {ms(f - a)})"
        )
    print(f"  mean: in-process {ms(statistics.mean(local))}  served {ms(statistics.mean(served))}")
    per = "n/a" if server_cpu is None else f"{server_cpu:.3f} ms"
    floor_per = "n/a" if bare_server is None else f"{bare_server:.3f} ms"
    print(
        f"  CPU per request: gauge serve {per}, bare aiohttp server {floor_per}; "
        f"client {client_cpu:.3f} ms ({bare_client:.3f} ms against the floor)"
    )
    added = pct(served, 0.5) - pct(local, 0.5)
    print(
        f"  TARGET added p50 <= 1 ms at concurrency {c}: {ms(added)} -> "
        f"{'MET' if added <= 0.001 else 'NOT MET'}"
    )
    print(
        f"  with the {other_client.__name__} client instead: added p50 "
        f"{ms(pct(other, 0.5) - pct(local, 0.5))} (client CPU {other_cpu:.3f} ms per request)"
    )

    with server(mock_latency=str(args.latency), mock_token_latency="0.005") as url:
        firsts, wholes = asyncio.run(streaming(url, 200, 32))
    print(
        f"streaming (16 tokens, {ms(args.latency)} to first, 5 ms between): "
        f"TTFT p50 {ms(pct(firsts, 0.5))} p99 {ms(pct(firsts, 0.99))}; "
        f"whole stream p50 {ms(pct(wholes, 0.5))}"
    )

    with server(mock_latency="0.2", max_concurrency="256") as url:
        limited = asyncio.run(burst(url, 500))
    with server(mock_latency="0.2", max_concurrency="1000") as url:
        unlimited = asyncio.run(burst(url, 500))
    print(f"500 at once, MAX_CONCURRENCY=256: {dict(limited)}")
    print(f"500 at once, MAX_CONCURRENCY=1000: {dict(unlimited)}")


if __name__ == "__main__":
    main()
