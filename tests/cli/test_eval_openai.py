"""`gauge eval` as a subprocess against the fake OpenAI server on 127.0.0.1."""

import asyncio
import os
import sys
from pathlib import Path

import orjson

from gauge.testing.openai_server import OpenAIServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "sk-canary-openai-4242"


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


async def test_eval_through_openai_wire_format(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env["OPENAI_API_KEY"] = KEY
    async with OpenAIServer(validate=True, retry_after=0.0) as server:
        server.script(
            status=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "0"}
        )
        code, out, err = await gauge(
            "eval",
            str(EXAMPLES / "arithmetic.py"),
            "-T",
            "limit=12",
            "--model",
            "openai/gpt-fake",
            "--model-base-url",
            server.url,
            "--temperature",
            "0",
            "--max-tokens",
            "20",
            "--log-dir",
            "logs",
            cwd=tmp_path,
            env=env,
        )
        assert code == 0, err
        assert "Unclosed" not in err  # the run closes the clients it opened
        assert server.validation_errors == []
        assert len(server.requests) == 13  # 12 samples + one retried 429
        body = server.requests[-1].body
        assert body["model"] == "gpt-fake" and body["temperature"] == 0 and body["max_tokens"] == 20
        assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert "arithmetic" in out and "12/12 (0 err)" in out
    [journal] = (tmp_path / "logs").glob("*.jsonl")
    text = journal.read_text()
    assert KEY not in text
    records = [orjson.loads(line) for line in text.splitlines()]
    samples = [r for r in records if r["type"] == "sample"]
    assert len(samples) == 12 and sum(r["retries"] for r in samples) == 1
    # the server echoes the prompt: "What is A+B?" ends with B, right only when A is 0
    first = samples[0]
    assert first["output"]["completion"] == first["input"][0]["content"]
    assert first["usage"]["total_tokens"] > 0
    assert records[0]["model"]["base_url"] == server.url


async def test_lm_eval_base_url_and_num_concurrent_model_args(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    async with OpenAIServer(validate=True) as server:
        code, _out, err = await gauge(
            "eval",
            str(EXAMPLES / "arithmetic.py"),
            "-T",
            "limit=5",
            "--model",
            "openai-api/local/m",
            "-M",
            f"base_url={server.url}",
            "-M",
            "num_concurrent=2",
            "--log-dir",
            "logs",
            cwd=tmp_path,
            env=env,
        )
        assert code == 0, err
        assert len(server.requests) == 5
        # The service stays in the model's name, so the journal resumes (and two
        # services serving one model name stay apart in a comparison).
        [journal] = (tmp_path / "logs").glob("*.jsonl")
        header = orjson.loads(journal.read_bytes().splitlines()[0])
        assert header["model"]["name"] == "openai-api/local/m"
        code, _out, err = await gauge(
            "eval", "--resume", str(journal), "-M", f"base_url={server.url}", cwd=tmp_path, env=env
        )
        assert code == 0, err
        assert len(server.requests) == 5  # nothing left to run
        code, _out, err = await gauge(
            "eval",
            str(EXAMPLES / "arithmetic.py"),
            "--model",
            "openai-api/local/m",
            "-M",
            f"base_url={server.url}",
            "-M",
            "num_concurrent=2",
            "--max-connections",
            "8",
            cwd=tmp_path,
            env=env,
        )
        assert code != 0 and len(server.requests) == 5
        [line] = [x for x in err.splitlines() if x.strip()]
        assert "num_concurrent" in line and "max_connections" in line
