"""Cost in a run: a mixed run's total to the cent, --cost-limit, and --dry-run sending nothing."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import Task, eval_async, get_model
from gauge.dataset import Sample
from gauge.evaluation.journal import read_journal
from gauge.evaluation.report import build_report, run_cost
from gauge.evaluation.results import render_results, total_cost
from gauge.evaluation.rows import read_log
from gauge.model.cost import clear_overrides, load_overrides
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, ModelUsage
from gauge.scorer import includes

PRICES = """\
models:
  mock/priced:
    input: 2
    output: 8
    cached_input: 0.5
    batch: 0.5
"""

# prompt -> (input tokens, output tokens, cached input tokens, from a batch job)
USAGE = {
    "q1": (100_000, 20_000, 0, False),  # 100,000 x 2 + 20,000 x 8 = $0.36
    "q2": (300_000, 50_000, 100_000, False),  # 200,000 x 2 + 100,000 x 0.5 + 50,000 x 8 = $0.85
    "q3": (100_000, 20_000, 0, True),  # half of $0.36 = $0.18
    "q4": (500_000, 100_000, 400_000, True),  # half of (200,000 + 200,000 + 800,000) = $0.60
    "q5": (77_700, 33_300, 0, True),  # half of (155,400 + 266,400) = $0.2109
}
# q1 again is a response-cache hit: it costs nothing now. Total: $2.2009.
TOTAL = Decimal("2.2009")


@pytest.fixture(autouse=True)
def no_overrides() -> Iterator[None]:
    clear_overrides()
    yield
    clear_overrides()


def reply(messages: list[ChatMessage], *_: Any) -> ModelOutput:
    text = messages[-1].text
    inputs, outputs, cached, batch = USAGE[text]
    output = ModelOutput.from_content("priced", f"answer to {text}")
    output.usage = ModelUsage(
        input_tokens=inputs,
        output_tokens=outputs,
        total_tokens=inputs + outputs,
        input_tokens_cache_read=cached or None,
    )
    if batch:  # what an output from a provider batch job carries
        output.metadata = {"batch": "batch_0042"}
    return output


async def test_a_mixed_run_totals_to_the_cent(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "prices.yaml").write_text(PRICES)
    load_overrides(tmp_path / "prices.yaml")
    prompts = [*USAGE, "q1"]
    samples = [Sample(input=p, target="answer", id=i) for i, p in enumerate(prompts, 1)]
    task = Task(samples, scorer=includes(), name="mixed")
    priced = get_model("mock/priced", outputs=reply, memoize=False)
    results = await eval_async(
        task,
        [priced, "mock/unpriced"],
        log_dir=tmp_path / "logs",
        display=False,
        cache=True,
        max_connections=1,
        max_samples=1,
    )
    by_model = {r.model: r for r in results}
    assert by_model["mock/priced"].cost == TOTAL
    assert by_model["mock/unpriced"].cost is None  # unknown, never 0
    assert priced.usage.cost == TOTAL  # the model's own total: the hit was not charged

    journal = read_journal(by_model["mock/priced"].journal)
    costs = {line["id"]: line["usage"]["cost"] for line in journal.samples.values()}
    assert costs == {1: 0.36, 2: 0.85, 3: 0.18, 4: 0.6, 5: 0.2109, 6: 0.0}
    assert journal.samples[(6, 1)]["cache"] == "hit"
    assert journal.samples[(5, 1)]["output"]["model_output"]["usage"]["cost"] == 0.2109
    assert journal.summary is not None and Decimal(str(journal.summary["cost"])) == TOTAL
    unpriced = read_journal(by_model["mock/unpriced"].journal)
    assert unpriced.summary is not None and unpriced.summary["cost"] is None
    # Unknown where it was sent; a cache hit costs 0 even without a price (nothing was paid).
    spent = {line["id"]: line["usage"].get("cost") for line in unpriced.samples.values()}
    assert spent == {1: None, 2: None, 3: None, 4: None, 5: None, 6: 0.0}

    table = render_results(results)
    assert "$2.2009" in table and "unknown" in table
    assert total_cost(results) == (
        "total cost: unknown (mock/unpriced has no price; $2.2009 for the priced runs); "
        "price it with --model-cost-config"
    )
    logs = [read_log(r.journal) for r in results]
    assert [run_cost(log) for log in logs] == [TOTAL, None]
    html = build_report(logs)
    assert "<td>$2.2009</td>" in html and "<td>unknown</td>" in html
    assert "total cost unknown (mock/unpriced has no price)" in html
    code, said = gauge("view", str(tmp_path / "logs"), "-o", str(tmp_path / "report.html"))
    assert code == 0 and said.strip().endswith(
        "(2 run(s), total cost unknown (mock/unpriced has no price))"
    ), said
    priced_only = read_log(by_model["mock/priced"].journal).path
    code, said = gauge("view", str(priced_only), "-o", str(tmp_path / "one.html"))
    assert said.strip().endswith("(1 run(s), total cost $2.2009)"), said


def test_an_unfinished_journal_sums_its_samples(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [
        {"type": "header", "task": {"name": "t"}, "model": {"name": "mock/priced"}},
        {"type": "sample", "id": 1, "epoch": 1, "usage": {"total_tokens": 5, "cost": 0.25}},
        {"type": "sample", "id": 2, "epoch": 1, "usage": {"total_tokens": 5, "cost": 0.0001}},
    ]
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    assert run_cost(read_log(path)) == Decimal("0.2501")
    lines.append({"type": "sample", "id": 3, "epoch": 1, "usage": {"total_tokens": 5}})
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    assert run_cost(read_log(path)) is None


TASK = """\
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import includes


@task
def words() -> Task:
    return Task([Sample(input="a b c d", target="a", id=i) for i in range(20)], scorer=includes())
"""

# mock/priced: 4 input tokens x $100 + 4 output tokens x $1,000 per 1M = $0.0044 a sample.
# The next sample is estimated at 2 tokens ("a b c d" is 7 characters / 4) x $100 +
# max_tokens 10 x $1,000 = $0.0102, so ten samples start ($0.0396 + $0.0102 <= $0.05)
# and the eleventh does not ($0.044 + $0.0102 > $0.05).
LIMIT_PRICES = "models:\n  mock/priced: {input: 100, output: 1000}\n"


def gauge(*words: str) -> tuple[Any, str]:
    from gauge.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(list(words))
            code: Any = 0
        except SystemExit as ex:
            code = ex.code
    return code, out.getvalue()


def test_cost_limit_stops_starting_samples_and_the_run_resumes(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(TASK)
    (tmp_path / "prices.yaml").write_text(LIMIT_PRICES)
    common = ["--model-cost-config", str(tmp_path / "prices.yaml"), "--no-display"]
    code, output = gauge(
        "eval", str(tmp_path / "task.py"), "--model", "mock/priced", "--max-tokens", "10",
        "--max-connections", "1", "--log-dir", str(tmp_path / "logs"), "--cost-limit", "0.05",
        *common,
    )  # fmt: skip
    assert code == 1, output
    last = output.strip().splitlines()[-1]
    said = (
        "--cost-limit $0.0500 reached: spent $0.0440 (+$0.0000 in flight), the next "
        "sample would cost about $0.0102; raise --cost-limit and resume"
    )
    assert said in last, last
    [path] = (tmp_path / "logs").glob("*.jsonl")
    journal = read_journal(path)
    assert len(journal.samples) == 10
    assert journal.summary is not None and journal.summary["cost"] == pytest.approx(0.044)
    not_run = [orjson.loads(x) for x in path.read_bytes().splitlines() if b'"not_run"' in x]
    assert len(not_run[0]["samples"]) == 10

    code, output = gauge("eval", "--resume", str(path), "--cost-limit", "1", *common)
    assert code == 0, output
    journal = read_journal(path)
    assert len(journal.samples) == 20
    # The resumed run's spend counts the first part too: 20 x $0.0044.
    assert journal.summary is not None
    assert Decimal(str(journal.summary["cost"])) == Decimal("0.088")
    assert "total cost: $0.0880 (1 run(s))" in output


def test_cost_limit_needs_a_price(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(TASK)
    logs = tmp_path / "logs"
    code, output = gauge(
        "eval", str(tmp_path / "task.py"), "--model", "mock/free", "--cost-limit", "1",
        "--log-dir", str(logs), "--no-display",
    )  # fmt: skip
    assert code == 2
    assert output.strip().splitlines()[-1] == (
        "error: --cost-limit needs a price for mock/free, which has none in the snapshot; "
        "give one with --model-cost-config (see docs/cost.md)"
    )
    assert not list(logs.glob("*.jsonl"))  # refused before any journal


DRY_TASK = """\
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import includes


@task
def dry() -> Task:
    inputs = ["x" * 40, "y" * 41, "z" * 3]
    return Task([Sample(input=text, target="x") for text in inputs], scorer=includes())
"""


async def test_dry_run_sends_nothing_and_prints_the_estimate_per_model(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from gauge.testing.openai_server import OpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "no-tiktoken"))  # the heuristic
    (tmp_path / "task.py").write_text(DRY_TASK)
    logs = tmp_path / "logs"
    async with OpenAIServer() as server:
        words = [
            "eval", str(tmp_path / "task.py"), "--model", "openai/gpt-4o,mock/free",
            "--model-base-url", server.url, "--max-tokens", "100", "--epochs", "2",
            "--log-dir", str(logs), "--no-display",
        ]  # fmt: skip
        code, output = await asyncio.to_thread(gauge, *words, "--dry-run")
        assert code == 0, output
        assert server.requests == []  # nothing was sent
        assert not logs.exists()  # and no journal written
        # The server counts what a real run sends (so the check above can fail).
        code, real = await asyncio.to_thread(gauge, *words, "--limit", "1")
        assert code == 0, real
        assert len(server.requests) == 2  # one sample, two epochs, on openai/gpt-4o
    # Input: (10 + 11 + 1 tokens at 4 characters a token) x 2 epochs = 44;
    # output: 100 x 3 samples x 2 epochs = 600. gpt-4o: 44 x 2.50 + 600 x 10 = 6,110 per 1M.
    assert output.splitlines()[1:7] == [
        "openai/gpt-4o",
        "  samples        6",
        "  input tokens   44 (chars/4 heuristic)",
        "  output tokens  at most 600 (max_tokens 100 each)",
        "  cost           $0.0061 (batch: $0.0031)",
        "  price          snapshot 2026-12-06 (https://developers.openai.com/api/docs/pricing)",
    ]
    assert output.splitlines()[7:13] == [
        "mock/free",
        "  samples        6",
        "  input tokens   44 (chars/4 heuristic)",
        "  output tokens  at most 600 (max_tokens 100 each)",
        "  cost           unknown",
        "  price          none in the snapshot: cost unknown; give one with --model-cost-config",
    ]


def test_samples_in_flight_count_against_the_limit_and_a_refusal_sticks() -> None:
    from gauge.evaluation.cost_limit import CostLimit, Estimator, Spend
    from gauge.model.cost import Price, Rates

    price = Price("mock/priced", Rates(Decimal(100), Decimal(1000)))
    # Each sample: 2 input tokens (7 characters / 4) x $100 + 10 x $1,000 = $0.0102.
    limit = CostLimit(Decimal("0.03"), Estimator(price, 10, "max_tokens"))
    spend = Spend(limit=limit)
    sample = Sample(input="a b c d", id=1)
    assert spend.admit(sample, 1) is None
    assert spend.admit(Sample(input="a b c d", id=2), 1) is None
    assert spend.reserved == {(1, 1): Decimal("0.0102"), (2, 1): Decimal("0.0102")}
    # Two in flight ($0.0204) + $0.0102 > $0.03: the third may not start.
    refused = spend.admit(Sample(input="a b c d", id=3), 1)
    assert refused is not None and "(+$0.0204 in flight)" in refused
    spend.add((1, 1), ModelUsage(input_tokens=4, output_tokens=4, cost=Decimal("0.0044")))
    assert spend.reserved == {(2, 1): Decimal("0.0102")} and spend.total == Decimal("0.0044")
    # Room again ($0.0044 + $0.0102 + $0.0102), but the run is winding down: still refused.
    assert spend.admit(Sample(input="a b c d", id=4), 1) == refused

    unknown = Spend(limit=CostLimit(Decimal(1), Estimator(price, 10, "max_tokens")))
    unknown.add((1, 1), ModelUsage(input_tokens=4, total_tokens=4))  # no cost: unknown
    assert unknown.total is None and unknown.unpriced_tokens == 4
    why = unknown.admit(sample, 1)
    assert why is not None and "the spend is unknown" in why


def test_the_live_display_shows_the_running_spend() -> None:
    from rich.console import Console

    from gauge.evaluation.cost_limit import Spend
    from gauge.evaluation.progress import Counters, ProgressDisplay

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def rate_stats(self) -> dict[str, Any]:
            return {
                "key": f"mock||-|{self.name}",
                "concurrency": 4,
                "adaptive": True,
                "in_flight": 2,
                "requests": 9,
                "rate_limit_hits": 0,
                "tokens_per_minute": 100.0,
                "slowed": None,
            }

    console = Console(width=200, record=True, force_terminal=True, file=io.StringIO())
    display = ProgressDisplay(console)
    running = Counters(total=10, done=4, spend=Spend(spent=Decimal("0.0176")))
    finished = Counters(total=10, done=10, spend=Spend(unpriced_tokens=40))
    display.add("mock/priced", running, Fake("priced"), "t")
    display.add("mock/free", finished, Fake("free"), "t")
    console.print(display._render())
    lines = console.export_text().splitlines()
    [priced] = [line for line in lines if "mock/priced" in line]
    [free] = [line for line in lines if "mock/free" in line]
    assert "cost $0.0176" in priced
    assert "cost unknown" in free and "$0" not in free


async def test_a_call_without_usage_makes_the_spend_unknown_not_zero(tmp_path: Path) -> None:
    from gauge.testing.openai_server import OpenAIServer

    (tmp_path / "prices.yaml").write_text("models:\n  openai-api/mock/m: {input: 2, output: 8}\n")
    load_overrides(tmp_path / "prices.yaml")
    samples = [Sample(input="q", target="x")]
    no_usage = {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
        ],
    }
    async with OpenAIServer() as server:
        model = get_model("openai-api/mock/m", base_url=server.url, api_key="k", memoize=False)
        server.script(json=no_usage)
        [silent] = await eval_async(Task(samples, name="silent"), model, **quiet(tmp_path))
        # The server's own answers carry usage: "q" is 1 input and 1 output token.
        [metered] = await eval_async(Task(samples, name="metered"), model, **quiet(tmp_path))
        await model.close()
    assert silent.cost is None  # sent and charged, but the provider said not how much
    assert metered.cost == Decimal("0.00001")  # 1 x $2 + 1 x $8 per 1M


def quiet(tmp_path: Path) -> dict[str, Any]:
    return {"log_dir": tmp_path, "display": False, "max_retries": 0}
