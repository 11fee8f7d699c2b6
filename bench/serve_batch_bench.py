"""`gauge serve`'s batch API with the mock engine: time, peak memory, real-time latency alongside.

    .venv/bin/python bench/serve_batch_bench.py [--lines 20000] [--small 2000] [--concurrency 32]

For each size (`--small`, then `--lines` requests) it starts `gauge serve --engine
mock` in a fresh subprocess on 127.0.0.1, uploads a JSONL file of chat requests
through the openai SDK, creates a batch and polls it to `completed`, then reads
the output file back. Reported per size: upload time, batch time (create to
completed), lines/s, and the server's resident memory when ready, at its peak
(VmHWM from /proc) and the peak's growth, so memory that grows with the file
would show as the two sizes' growths differing by the ratio of their lines.

Then, in the `--lines` server: the same requests sent one by one in real time at
`--concurrency` (aiohttp) for the batch/real-time time ratio, and the latency of
sequential real-time chat requests with the server idle and while a batch of
`--lines` runs (the batch takes `--batch-concurrency` lines at once, default 32).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
from _harness import free_port, wait_for_health

MODEL = "mock-model"


def lines(count: int) -> bytes:
    """`count` chat requests, one JSON line each (about 170 bytes a line)."""
    out = []
    for i in range(count):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"question {i} about some words here"}],
            "max_tokens": 8,
        }
        line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
        out.append(orjson.dumps(line | {"body": body}))
    return b"\n".join(out) + b"\n"


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process `pid`, in KiB."""
    values = {}
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = row.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


class Served:
    """`gauge serve --engine mock` in a subprocess."""

    def __init__(self, batch_concurrency: int) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-c", "from gauge.cli.main import main; main()", "serve"]
        cmd += ["--engine", "mock", "--model", MODEL, "--port", str(self.port)]
        cmd += ["--disable-log-requests", "1", "--disable-log-stats", "1"]
        cmd += ["--batch-concurrency", str(batch_concurrency)]
        self.process = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        self.root = f"http://127.0.0.1:{self.port}"
        wait_for_health(self.root, 60)
        self.client = openai.OpenAI(base_url=self.root + "/v1", api_key="none", max_retries=0)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)


def run_batch(served: Served, data: bytes) -> dict[str, Any]:
    """Upload `data`, run it as a batch to the end; the timings and the output's size."""
    began = time.perf_counter()
    file_id = served.client.files.create(file=("in.jsonl", data), purpose="batch").id
    uploaded = time.perf_counter()
    batch = served.client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.05)
        batch = served.client.batches.retrieve(batch.id)
    done = time.perf_counter()
    if batch.status != "completed" or batch.output_file_id is None:
        raise SystemExit(f"the batch ended {batch.status}: {batch}")
    output = served.client.files.content(batch.output_file_id).content
    return {
        "upload_s": uploaded - began,
        "batch_s": done - uploaded,
        "output_lines": output.count(b"\n"),
        "batch_id": batch.id,
    }


async def real_time(root: str, count: int, concurrency: int) -> float:
    """Seconds to send `count` chat requests at `concurrency` (aiohttp)."""
    body = orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "question about some words here"}],
            "max_tokens": 8,
        }
    )
    left = iter(range(count))
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in left:
                async with session.post(
                    root + "/v1/chat/completions", data=body, headers=headers
                ) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise SystemExit(f"real-time request got {reply.status}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


def sequential_latency(served: Served, count: int) -> list[float]:
    """Latency in ms of `count` chat requests sent one after another."""
    got = []
    for _ in range(count):
        began = time.perf_counter()
        served.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "live"}], max_tokens=4
        )
        got.append((time.perf_counter() - began) * 1000)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32, help="real-time clients")
    parser.add_argument("--batch-concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    for count in (args.small, args.lines):
        data = lines(count)
        served = Served(args.batch_concurrency)
        try:
            ready_rss, _ = memory_kib(served.process.pid)
            result = run_batch(served, data)
            _, peak = memory_kib(served.process.pid)
            print(
                f"{count} lines ({len(data) / 1e6:.1f} MB): upload {result['upload_s']:.2f} s, "
                f"batch {result['batch_s']:.2f} s ({count / result['batch_s']:.0f} lines/s), "
                f"output {result['output_lines']} lines; server RSS ready "
                f"{ready_rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
                f"(+{(peak - ready_rss) / 1024:.1f} MiB)"
            )
            if count != args.lines:
                continue
            live = asyncio.run(real_time(served.root, count, args.concurrency))
            print(
                f"{count} real-time requests at concurrency {args.concurrency}: {live:.2f} s "
                f"({count / live:.0f}/s); batch / real-time time: "
                f"{result['batch_s'] / live:.2f}"
            )
            idle = sequential_latency(served, 100)
            batch = served.client.batches.create(
                input_file_id=served.client.files.create(
                    file=("again.jsonl", data), purpose="batch"
                ).id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            while served.client.batches.retrieve(batch.id).status != "in_progress":
                time.sleep(0.01)
            busy = sequential_latency(served, 100)
            still = served.client.batches.retrieve(batch.id)
            counts = still.request_counts
            print(
                f"real-time chat latency p50 / max: idle {statistics.median(idle):.2f} / "
                f"{max(idle):.2f} ms; during the batch {statistics.median(busy):.2f} / "
                f"{max(busy):.2f} ms (batch still {still.status}, "
                f"{counts.completed if counts else '?'} of {count} done)"
            )
        finally:
            served.stop()


if __name__ == "__main__":
    main()
