"""examples/custom_api.py end to end against its fake server (examples/custom_api_server.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from aiohttp import web

from gauge.evaluation.runner import eval_async
from gauge.model import get_model
from gauge.model.registry import unregister

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "sk-canary-myapi-7731"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def custom_api() -> Iterator[ModuleType]:
    yield load("custom_api")  # registers myapi/
    unregister("myapi")


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    fake = load("custom_api_server")
    app = fake.make_app(api_key=KEY)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", app[fake.REQUESTS]
    await runner.cleanup()


async def test_generate_is_batched_and_answers_in_order(
    custom_api: ModuleType, server: tuple[str, list[dict[str, Any]]]
) -> None:
    url, requests = server
    async with get_model("myapi/sums", base_url=url, api_key=KEY, batch_size=4) as model:
        outputs = await asyncio.gather(*(model.generate(f"What is {i}+{i}?") for i in range(10)))
        capped = await model.generate("What is 40+2?", config={"max_tokens": 3, "seed": 7})
    assert [o.completion for o in outputs] == [f"The answer is {2 * i}." for i in range(10)]
    generate_calls = [r for r in requests if r["path"] == "/generate"]
    assert [len(r["inputs"]) for r in generate_calls] == [4, 4, 2, 1]
    assert generate_calls[0]["max_new_tokens"] == 256  # lm-eval's max_gen_toks default
    assert generate_calls[-1]["max_new_tokens"] == 3
    assert generate_calls[-1]["seed"] == 7
    assert capped.completion == "The answer is"


async def test_loglikelihood_scores_pairs_in_one_call(
    custom_api: ModuleType, server: tuple[str, list[dict[str, Any]]]
) -> None:
    url, requests = server
    async with get_model("myapi/sums", base_url=url, api_key=KEY) as model:
        scores = await model.loglikelihood(
            [("What is 2+3? Answer:", " 5"), ("What is 2+3? Answer:", " 6"), ("Hi ", "there")]
        )
    assert scores == [(-0.25, True), (-3.0, False), (-7.0, False)]
    assert [r["path"] for r in requests] == ["/score"]  # default_batch_size 8: one call
    assert requests[0]["pairs"][2] == {"context": "Hi", "continuation": " there"}


async def test_a_wrong_key_is_a_fatal_401(
    custom_api: ModuleType, server: tuple[str, list[dict[str, Any]]]
) -> None:
    url, requests = server
    async with get_model("myapi/sums", base_url=url, api_key="wrong") as model:
        with pytest.raises(Exception, match="HTTP 401: bad or missing X-API-Key"):
            await model.generate("What is 1+1?")
    assert requests == []


async def test_an_eval_in_process_scores_every_sample(
    custom_api: ModuleType, server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, requests = server
    model = get_model("myapi/sums", base_url=url, api_key=KEY, batch_size=5, memoize=False)
    [result] = await eval_async(
        custom_api.sums(limit=25), model, log_dir=str(tmp_path), display=False
    )
    await model.close()
    assert result.status == "success"
    assert result.metrics["match"]["accuracy"] == 1.0
    assert sum(len(r["inputs"]) for r in requests) == 25
    assert max(len(r["inputs"]) for r in requests) <= 5


async def test_a_loglikelihood_eval_picks_every_right_choice(
    custom_api: ModuleType, server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, requests = server
    model = get_model("myapi/sums", base_url=url, api_key=KEY, batch_size=8, memoize=False)
    [result] = await eval_async(
        custom_api.sums_choice(limit=12), model, log_dir=str(tmp_path), display=False
    )
    await model.close()
    assert result.status == "success"
    assert result.metrics["acc"]["accuracy"] == 1.0
    assert result.metrics["acc_norm"]["accuracy"] == 1.0
    assert {r["path"] for r in requests} == {"/score"}
    assert sum(len(r["pairs"]) for r in requests) == 12 * 4  # every choice scored once
    assert requests[0]["pairs"][0]["context"] == "What is 0+3?\nAnswer:"


async def test_gauge_eval_cli_runs_the_example(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, requests = server
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAUGE_")}
    env["MYAPI_API_KEY"] = KEY
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gauge.cli.main",
        "eval",
        f"{EXAMPLES / 'custom_api.py'}@sums",
        "-T",
        "limit=20",
        "--model",
        "myapi/sums",
        "--model-base-url",
        url,
        "-M",
        "batch_size=4",
        "-M",
        "num_concurrent=2",
        "--log-dir",
        "logs",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert sum(len(r["inputs"]) for r in requests) == 20
    assert max(len(r["inputs"]) for r in requests) <= 4
    [journal] = (tmp_path / "logs").glob("*.jsonl")
    text = journal.read_text()
    assert KEY not in text and KEY not in out.decode() and KEY not in err.decode()
    summary = orjson.loads(text.strip().splitlines()[-1])
    assert summary["metrics"]["match"]["accuracy"] == 1.0
