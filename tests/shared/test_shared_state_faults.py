"""Shared state when Redis is not there: at start (one error line, or a warning and
local state), lost mid-run (the run goes on, then shares again), and what Redis
holds (never a secret)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from redis_process import RedisServer, free_port, reset_setting

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.rate import shared
from gauge.model.rate.shared_key import SharedKey
from gauge.testing import OpenAIServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arithmetic.py"


@pytest.fixture(autouse=True)
def default_setting() -> Any:
    yield
    reset_setting()


def shared_key(model: Any) -> SharedKey:
    key = model.key().budgets._key
    assert isinstance(key, SharedKey)
    return key


def gauge_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "gauge.cli.main", "eval", str(EXAMPLE), "--model", "mock/m"),
            *("--limit", "3", "--no-display", "--log-dir", str(cwd / "logs")),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_unreachable_redis_is_one_error_line_naming_the_url(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    proc = gauge_eval("--shared-state", url, cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    shown = url.replace("hunter2", "***")
    assert line.startswith(f"error: shared state: cannot reach Redis at {shown} (")
    assert "--shared-state-fallback local" in line and "hunter2" not in proc.stderr
    assert not (tmp_path / "logs").exists()  # stopped before any journal
    # The same from Python, and from the environment.
    with pytest.raises(ConfigError, match=r"cannot reach Redis at redis://127\.0\.0\.1"):
        shared.use(f"redis://127.0.0.1:{free_port()}/0")
    proc = subprocess.run(
        [sys.executable, "-c", "from gauge.model.rate.shared import current; current()"],
        capture_output=True,
        text=True,
        env={"GAUGE_SHARED_STATE": url, "PATH": ""},
    )
    assert proc.returncode != 0 and "cannot reach Redis at" in proc.stderr


def test_a_bad_url_or_fallback_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"must start with redis://"):
        shared.use("http://localhost:6379")
    with pytest.raises(ConfigError, match="fallback must be one of error, local"):
        shared.use("redis://localhost:6379/0", fallback="maybe")


def test_fallback_local_warns_and_runs_with_local_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = gauge_eval("--shared-state", url, "--shared-state-fallback", "local", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [x for x in proc.stderr.splitlines() if "shared state" in x]
    assert len(warnings) == 1 and "running with local rate state" in warnings[0]
    with caplog.at_level(logging.WARNING, logger="gauge.shared"):
        setting = shared.use(url, fallback="local")
    assert setting is not None and not setting.reachable
    assert "cannot reach Redis" in caplog.text


async def test_fallback_local_shares_once_redis_answers(redis_server: RedisServer) -> None:
    redis_server.stop()
    shared.use(redis_server.url, fallback="local")
    async with OpenAIServer() as server:
        model = get_model("openai-api/t/m", base_url=server.url, api_key="k", memoize=False)
        await model.generate("one")
        key = shared_key(model)
        assert not key.live
        redis_server.start()
        for _ in range(60):
            await model.generate("again")
            if key.live:
                break
            await asyncio.sleep(0.1)
        assert key.live
        await model.close()


@pytest.mark.parametrize(
    "limits",
    [
        {"rate_limit": 50},
        # 400 tokens/s over 1 s windows, ~6 per request: the shared token window's line
        # goes to the local bucket when Redis goes, and back to Redis when it returns.
        {"tokens_per_minute": 24_000, "token_window": 1.0},
    ],
    ids=["requests", "tokens"],
)
async def test_redis_lost_mid_run_loses_no_sample(
    shared_on: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    limits: dict[str, float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gauge import Task
    from gauge.model.rate import shared_link

    monkeypatch.setattr(shared_link, "_warned", False)  # warned once per process
    from gauge.dataset import Sample
    from gauge.evaluation.runner import eval_async
    from gauge.scorer import includes
    from gauge.solver import generate

    n = 300
    samples = [Sample(input=f"What is {i}?", target=str(i), id=i) for i in range(n)]
    task = Task(samples, solver=[generate()], scorer=includes(), name="lost")
    async with OpenAIServer(**limits, rate_headers=True, latency=0.05) as server:
        model = get_model("openai-api/t/m", base_url=server.url, api_key="k", memoize=False)
        key = shared_key(model)

        async def outage() -> None:
            while server.count < 80:
                await asyncio.sleep(0.02)
            shared_on.stop()
            await asyncio.sleep(1.5)
            assert not key.live  # the run went on with local state
            shared_on.start()

        chaos = asyncio.ensure_future(outage())
        with caplog.at_level(logging.INFO, logger="gauge.shared"):
            [result] = await eval_async(
                task,
                model,
                log_dir=tmp_path,
                display=False,
                config=GenerateConfig(max_retries=10),
            )
        await chaos
        assert key.live  # joined again once Redis answered
        await model.close()
    assert result.completed == n and result.errors == 0
    lines = [json.loads(x) for x in Path(result.journal).read_text().splitlines()]
    assert sum(1 for x in lines if x["type"] == "sample") == n
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING
    assert any("is back" in r.getMessage() for r in caplog.records)


async def test_no_secret_reaches_redis(shared_on: RedisServer) -> None:
    canary = "sk-canary-7f3a9c1e5b"
    user_canary = "pw-canary-88d1"
    async with OpenAIServer(rate_limit=30, rate_headers=True) as server:
        model = get_model("openai-api/t/m", base_url=server.url, api_key=canary, memoize=False)
        for _ in range(2):  # identical fatal errors whose text holds the key
            server.script(401, {"error": {"message": f"Incorrect API key provided: {canary}"}})
        for _ in range(2):
            with pytest.raises(Exception, match="Incorrect API key"):
                await model.generate("hi", config=GenerateConfig(max_retries=0))
        shared_key(model).nudge()
        await asyncio.sleep(0.3)  # the streak is written
        streak = dump_redis(shared_on.client())
        server.script(429, {"error": {"message": "slow"}}, headers={"Retry-After": "0.2"})
        await asyncio.gather(*(model.generate(f"q {i}") for i in range(40)))
        # A base URL with credentials: the key's name is a hash of it, never the URL.
        base = server.url.replace("http://", f"http://user:{user_canary}@")
        other = get_model("openai-api/t/m", base_url=base, memoize=False)
        await other.generate("hi")
        for each in (model, other):
            shared_key(each).nudge()
        await asyncio.sleep(0.3)  # the last renewals (limits, streak) are written
        dump = streak + b"\n" + dump_redis(shared_on.client())
        await model.close()
        await other.close()
    assert dump.count(b":state") == 3  # the streak, then both keys' state
    assert b"stop_sig" in dump and b"limits" in dump and b"pause" in dump
    # The lines that hold a secret, if any (pytest's own explanation of `in` over
    # the whole dump takes minutes).
    secrets = (canary.encode(), user_canary.encode(), b"Incorrect API key")
    assert [line for line in dump.split(b"\n") if any(s in line for s in secrets)] == []


def dump_redis(client: Any) -> bytes:
    """Every key name and value in Redis, as bytes."""
    out = []
    for name in client.scan_iter(count=1000):
        out.append(name)
        kind = client.type(name)
        if kind == b"hash":
            for field, value in client.hgetall(name).items():
                out += [field, value]
        elif kind == b"zset":
            for member, score in client.zrange(name, 0, -1, withscores=True):
                out += [member, str(score).encode()]
        elif kind == b"string":
            out.append(client.get(name))
        elif kind == b"list":
            out += client.lrange(name, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(name))
        else:
            out.append(repr(kind).encode())
    return b"\n".join(out)


def test_identical_fatal_errors_of_two_processes_stop_both(shared_on: RedisServer) -> None:
    # Two event loops in two threads: two SharedKeys of one key, as two processes.
    from gauge.model.api import RetryDecision
    from gauge.model.rate.keys import connection_key

    class Denied(Exception):
        status = 401

    fatal = RetryDecision("fatal")
    name = "openai-api|http://h/v1|abc|m"
    ready = threading.Event()
    other_done = threading.Event()
    stops: dict[str, bool] = {}

    async def first() -> None:
        key = connection_key(name, 4)
        await key.budgets._key.join()  # type: ignore[attr-defined]
        key.stop.failed(Denied("denied"), fatal, 3)
        key.stop.failed(Denied("denied"), fatal, 3)
        key.budgets._key.nudge()  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        ready.set()
        while not other_done.is_set():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the next renewal hears the streak
        stops["first"] = key.stop.error is not None

    async def second() -> None:
        ready.wait(10)
        key = connection_key(name, 4)
        await key.budgets._key.join()  # type: ignore[attr-defined]
        key.stop.failed(Denied("denied"), fatal, 3)  # the third identical one
        stops["second"] = key.stop.error is not None
        key.budgets._key.nudge()  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        other_done.set()

    thread = threading.Thread(target=asyncio.run, args=(first(),))
    thread.start()
    asyncio.run(second())
    thread.join(10)
    assert stops == {"first": True, "second": True}


def test_without_the_setting_redis_is_never_imported() -> None:
    code = (
        "import sys, asyncio\n"
        "from gauge.model.rate.keys import connection_key, ConnectionKey\n"
        "from gauge.model.rate.budgets import Budgets\n"
        "async def main():\n"
        "    key = connection_key('p|u|k|m', 4)\n"
        "    assert type(key.budgets) is Budgets\n"
        "asyncio.run(main())\n"
        "print('redis' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}
    )
    assert proc.stdout.strip() == "False", proc.stderr
