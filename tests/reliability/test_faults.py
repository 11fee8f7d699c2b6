"""Evals under injected faults end in bounded time, each sample done or an error naming its cause.

Each run goes through `openai-api/mock/...` against the mock server on 127.0.0.1.
Fault draws are seeded per request body (gauge.testing.faults), so which samples
fail, and which recover on retry, is the same on every run of these tests.
Streaming faults go through Model.stream: the eval runner calls generate only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import Task
from gauge.dataset import Sample
from gauge.evaluation.runner import eval_async
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.scorer import match
from gauge.testing import OpenAIServer

N = 24

# What each fault's error says (a sample that fails must name its cause).
CAUSES = {
    "error": "HTTP 500",
    "reset": "Connection reset by peer",
    "malformed": "not JSON",
    "hang": "attempt_timeout",
    "storm": "HTTP 429",
    "trickle": "attempt_timeout",
}


def words_task(n: int = N) -> Task:
    """Samples whose echoed reply equals the target (the mock server echoes the prompt)."""
    return Task(
        [Sample(input=f"alpha beta q{i}", target=f"alpha beta q{i}", id=f"s{i}") for i in range(n)],
        scorer=match(location="exact"),
        name="faults",
    )


def journal_lines(path: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]
    samples = [line for line in lines if line["type"] == "sample"]
    [summary] = [line for line in lines if line["type"] == "summary"]
    return samples, summary


async def run_eval(
    server: OpenAIServer, config: GenerateConfig, n: int = N
) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    started = time.monotonic()
    [result] = await eval_async(
        words_task(n),
        "openai-api/mock/m",
        model_base_url=server.url,
        config=config,
        max_errors=n,
        max_samples=n,
        display=False,
    )
    wall = time.monotonic() - started
    samples, summary = journal_lines(result.journal)
    assert result.completed + result.errors == n
    assert summary["completed"] + summary["errors"] == summary["samples"] == n
    return samples, summary, wall


def check_outcomes(samples: list[dict[str, Any]], causes: tuple[str, ...]) -> Counter[str]:
    """Every sample is scored, or failed with one of `causes` in its error; counts both."""
    assert sorted(s["id"] for s in samples) == sorted(f"s{i}" for i in range(len(samples)))
    out: Counter[str] = Counter()
    for sample in samples:
        if sample["error"] is None:
            assert sample["scores"]["match"]["value"] == "C", sample
            out["recovered" if sample["retries"] else "clean"] += 1
        else:
            message = sample["error"]["message"]
            attempts = sample["error"]["attempts"]
            assert attempts, sample  # the attempt history is kept
            if "exceeded timeout=" in message:
                # Out of total time while waiting to retry: the history names the fault.
                message = " ".join(a["error"] for a in attempts)
                out["timeout"] += 1
            assert any(cause in message for cause in causes), message
            out["error"] += 1
    return out


# kind -> (server faults, client config)
FAULTS: dict[str, tuple[dict[str, Any], GenerateConfig]] = {
    "error": ({"error_rate": 0.5}, GenerateConfig(max_retries=1, timeout=20)),
    "reset": ({"reset_rate": 0.5}, GenerateConfig(max_retries=1, timeout=20)),
    "malformed": ({"malformed_rate": 0.5}, GenerateConfig(max_retries=1, timeout=20)),
    "hang": ({"hang_rate": 0.5}, GenerateConfig(max_retries=1, attempt_timeout=1, timeout=20)),
    "trickle": (
        # 4 pieces 0.6 s apart take 1.8 s: past attempt_timeout, so cancelled and retried.
        {"trickle_rate": 0.5, "trickle_delay": 0.6},
        GenerateConfig(max_retries=1, attempt_timeout=1, timeout=20),
    ),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_each_fault_ends_bounded_with_done_or_named_errors(kind: str) -> None:
    faults, config = FAULTS[kind]
    async with OpenAIServer(seed=11, **faults) as server:
        samples, summary, wall = await run_eval(server, config)
    counts = check_outcomes(samples, (CAUSES[kind],))
    assert counts["timeout"] == 0, counts  # timeout=20 is never reached
    # Rate 0.5 with one retry: some samples fail twice, some recover, some never see it.
    assert counts["error"] > 0 and counts["recovered"] > 0, counts
    assert counts["error"] == summary["errors"]
    assert server.faults.counts[kind] == counts["error"] * 2 + counts["recovered"]
    # All samples run at once; one retry with a <= 2 s wait, attempts <= 1.8 s.
    assert wall < 15, wall


@pytest.mark.parametrize("with_wait", [True, False], ids=["retry-after", "no-retry-after"])
async def test_429_storms_are_waited_out(with_wait: bool) -> None:
    # A storm starts with 10 % chance and 429s everything for 0.4 s. With Retry-After
    # the client waits the storm's time left; without, its own backoff (1 s, 2 s, ...).
    faults: dict[str, Any] = {
        "storm_rate": 0.1,
        "storm_seconds": 0.4,
        "storm_retry_after": with_wait,
    }
    config = GenerateConfig(max_retries=4, timeout=20, max_connections=4)
    async with OpenAIServer(seed=5, latency=0.01, **faults) as server:
        samples, summary, wall = await run_eval(server, config)
    counts = check_outcomes(samples, (CAUSES["storm"],))
    assert server.faults.counts["storm"] > 0
    assert counts["recovered"] > 0, counts
    rejected = [r for r in server.requests if r.fault == "storm"]
    assert len(rejected) == server.faults.counts["storm"]
    stats = summary["rate_control"]
    assert stats["rate_limit_hits"] == server.faults.counts["storm"]
    if with_wait:  # Retry-After pauses the whole key, not just the one request
        assert stats["pauses"] >= 1
    assert wall < 25, wall


async def test_a_mix_of_faults_through_the_cli_prints_totals(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gauge.cli.main import main

    (tmp_path / "mix.py").write_text(
        "from gauge import Task, task\n"
        "from gauge.dataset import Sample\n"
        "from gauge.scorer import match\n"
        "@task\n"
        "def mix(n: int = 10) -> Task:\n"
        "    return Task([Sample(input=f'alpha beta q{i}', target=f'alpha beta q{i}', id=f's{i}')\n"
        "                 for i in range(n)], scorer=match(location='exact'))\n"
    )
    faults: dict[str, Any] = {
        "error_rate": 0.1,
        "reset_rate": 0.1,
        "malformed_rate": 0.1,
        "hang_rate": 0.05,
        "trickle_rate": 0.1,
        "trickle_delay": 0.6,
    }
    # Storms have their own test above: in a burst of 40 at once, one 429 without
    # rate headers makes the rate controller infer a low request rate and charge the
    # burst to it, which stalls every retry for many seconds (see bench/results/faults.md).
    n = 40
    async with OpenAIServer(seed=3, **faults) as server:
        args = [
            "eval",
            str(tmp_path / "mix.py"),
            "-T",
            f"n={n}",
            "-m",
            "openai-api/mock/m",
            "--model-base-url",
            server.url,
            "--max-retries",
            "1",
            "--attempt-timeout",
            "1",
            "--timeout",
            "20",
            "--max-connections",
            str(n),
            "--max-errors",
            str(n),
            "--log-dir",
            str(tmp_path / "logs"),
            "--no-display",
        ]
        started = time.monotonic()
        await asyncio.to_thread(main, args)
        wall = time.monotonic() - started
    [journal] = (tmp_path / "logs").glob("*.jsonl")
    samples, summary = journal_lines(str(journal))
    counts = check_outcomes(samples, tuple(CAUSES.values()))
    injected = server.faults.counts
    assert len(injected) == 5, injected  # every kind fired in one run
    assert counts["error"] > 0 and counts["recovered"] > 0, counts
    out = capsys.readouterr().out
    assert f"{n - counts['error']}/{n} ({counts['error']} err)" in out
    assert summary["completed"] + summary["errors"] == n
    assert wall < 20, wall


STREAM_CAUSES = ("payload is not completed", "truncated", "stream stalled past attempt_timeout")


async def stream_all(
    server: OpenAIServer, config: GenerateConfig, n: int = N
) -> tuple[Counter[str], float]:
    model = get_model("openai-api/mock/m", base_url=server.url, memoize=False)

    async def one(i: int) -> str:
        prompt = f"alpha beta gamma delta q{i}"
        try:
            text = "".join([delta async for delta in model.stream(prompt, config=config)])
        except Exception as ex:
            message = str(ex)
            assert any(cause in message for cause in STREAM_CAUSES), message
            return "error"
        assert text == prompt  # a stream that ends normally is complete
        return "done"

    started = time.monotonic()
    try:
        outcomes = Counter(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await model.close()
    return outcomes, time.monotonic() - started


async def test_truncated_streams_fail_with_their_cause_never_as_short_text() -> None:
    config = GenerateConfig(max_retries=1, attempt_timeout=2, timeout=10)
    async with OpenAIServer(seed=2, truncate_rate=0.5) as server:
        outcomes, wall = await stream_all(server, config)
    assert outcomes["done"] + outcomes["error"] == N
    assert outcomes["error"] > 0 and outcomes["done"] > 0, outcomes
    assert server.faults.counts["truncate"] >= outcomes["error"]
    assert wall < 15, wall


async def test_trickling_streams_complete_or_stall_out_within_attempt_timeout() -> None:
    config = GenerateConfig(max_retries=1, attempt_timeout=1.0, timeout=10)
    # Chunks 0.4 s apart stream to the end, 2.4 s in all: attempt_timeout bounds the
    # wait for each chunk, not the whole stream. 2 s apart they stall and are retried.
    async with OpenAIServer(seed=4, trickle_rate=1.0, trickle_delay=0.4) as server:
        slow, slow_wall = await stream_all(server, config)
    assert slow == {"done": N}
    assert slow_wall >= 0.4 * 5  # six chunks (role, five words), five gaps
    async with OpenAIServer(seed=4, trickle_rate=0.5, trickle_delay=2.0) as server:
        stalled, wall = await stream_all(server, config)
    assert stalled["error"] > 0 and stalled["done"] > 0, stalled
    assert stalled["done"] + stalled["error"] == N
    assert wall < 15, wall


async def test_sporadic_429s_with_budget_left_retry_the_request_not_the_key() -> None:
    # 10% of answers are a lone 429 + Retry-After while the headers show budget left:
    # each such request waits its Retry-After and goes again; the key never pauses.
    config = GenerateConfig(max_retries=8)
    async with OpenAIServer(seed=7, sporadic_rate=0.1, retry_after=0.2) as server:
        model = get_model("openai-api/mock/m", base_url=server.url, memoize=False)
        [result] = await eval_async(
            words_task(60), model, config=config, max_samples=16, display=False
        )
        stats = model.rate_stats()
        await model.close()
    samples, summary = journal_lines(result.journal)
    assert len(samples) == 60 and all(s["error"] is None for s in samples)
    assert server.faults.counts["sporadic"] > 0
    assert stats["retried_429s"] == stats["rate_limit_hits"] == server.faults.counts["sporadic"]
    assert stats["pauses"] == 0 and stats["paused_for"] == 0.0
    assert summary["rate_control"]["retried_429s"] == stats["retried_429s"]


async def test_a_sporadic_429_on_a_key_with_no_budget_left_still_pauses_it() -> None:
    # The same lone 429s, but the server's own headers say the request budget is spent.
    async with OpenAIServer(
        seed=7, sporadic_rate=0.3, retry_after=0.2, rate_limit=5, rate_headers=True
    ) as server:
        model = get_model("openai-api/mock/m", base_url=server.url, memoize=False)
        outputs = await asyncio.gather(
            *(model.generate(f"n{i}", config=GenerateConfig(max_retries=10)) for i in range(15))
        )
        stats = model.rate_stats()
        await model.close()
    assert [o.completion for o in outputs] == [f"n{i}" for i in range(15)]
    assert stats["pauses"] > 0
