"""`gauge eval --batch` as a subprocess against the fake OpenAI batch server: every sample's
request goes into jobs, and each is submitted exactly once."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gauge.testing.openai_batch_server import OpenAIBatchServer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


async def gauge(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gauge.cli.main",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_eval_with_batch_sends_jobs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env["OPENAI_API_KEY"] = "sk-test"
    async with OpenAIBatchServer(polls=1) as server:
        code, _, err = await gauge(
            "eval",
            str(EXAMPLES / "arithmetic.py"),
            "-T",
            "limit=6",
            "--model",
            "openai/gpt-4o-mini",
            "--model-base-url",
            server.url,
            "--batch",
            '{"size": 4, "send_delay": 0.05, "tick": 0.02}',
            "--no-display",
            cwd=tmp_path,
            env=env,
        )
        assert code == 0, err
        stats = server.stats()
    assert stats["realtime"] == 0
    assert len(stats["submissions"]) == 6 and stats["duplicates"] == 0
    assert stats["jobs"] >= 2  # jobs of at most 4
    assert all(len(job.lines) <= 4 for job in server.jobs.values())


async def test_batch_on_a_provider_without_jobs_stops_before_the_journal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    code, _, err = await gauge(
        "eval",
        str(EXAMPLES / "arithmetic.py"),
        "--model",
        "mock/test",
        "-M",
        "batch=true",
        "--no-display",
        cwd=tmp_path,
        env=env,
    )
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "error: provider 'mock' has no batch endpoint; batch works with openai, azure openai, "
        "anthropic, google, together, groq, mistral: remove batch (--batch) for this model"
    )
    assert not (tmp_path / "logs").exists()  # refused at preflight: nothing was written
