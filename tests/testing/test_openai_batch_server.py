"""The fake OpenAI batch server in process mode: a separate process whose counts are
read over HTTP (what crash tests of the eval runner use)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp

from gauge.model.factory import get_model


async def test_process_mode_batches_and_counts_over_http() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gauge.testing.openai_batch_server",
            "--port",
            "0",
            "--polls",
            "1",
            "--fail",
            "refuse me=400",
            "--end",
            "expired",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        model = get_model("openai/gpt-4o-mini", base_url=url, api_key="sk-test", memoize=False)
        fast = {"size": 10, "send_delay": 0.01, "tick": 0.01}
        try:
            output = await asyncio.wait_for(model.generate("hello", config={"batch": fast}), 20)
            failed = model.generate("refuse me", config={"batch": fast})
            error = await asyncio.wait_for(asyncio.gather(failed, return_exceptions=True), 20)
        finally:
            await model.close()
        assert output.completion == "hello"
        assert output.metadata == {"batch": "batch_2"}  # batch_1 expired (--end expired)
        assert "HTTP 400: injected 400" in str(error[0])
        async with (
            aiohttp.ClientSession() as http,
            http.get(url.removesuffix("/v1") + "/stats") as r,
        ):
            stats = await r.json()
        assert (stats["jobs"], stats["realtime"]) == (3, 0)
        assert sorted(stats["submissions"].values()) == [1, 2]
    finally:
        process.terminate()
        exit_code = await asyncio.to_thread(process.wait, 10)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0
