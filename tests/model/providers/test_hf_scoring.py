"""Loglikelihood scoring on the bundled gauge-tiny model (lm-eval's HFLM semantics)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from gauge.errors import ConfigError
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.providers.hf import HuggingFaceAPI
from gauge.model.providers.hf.loading import Loaded, bundled_path
from gauge.model.providers.hf.scoring import (
    HFTokenizer,
    max_length_of,
    prompt_logprobs,
    score_queue,
)
from gauge.model.scoring import LoglikelihoodRequest

HELD_OUT = Path(__file__).resolve().parents[3] / "examples" / "data" / "arithmetic.jsonl"

pytestmark = pytest.mark.skipif(
    not (bundled_path() / "config.json").is_file() or not HELD_OUT.is_file(),
    reason="the bundled model or its held-out data is not built (scripts/train_tiny_model.py)",
)


def prompt(question: str) -> str:
    """The bundled model's chat format for one user turn, ready for the answer."""
    return f"<|user|>{question}<|assistant|>"


def held_out(n: int) -> list[dict[str, str]]:
    lines = HELD_OUT.read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def tiny() -> Model:
    return get_model("hf/gauge-tiny", memoize=False, device="cpu")


async def loaded_of(model: Model) -> Loaded:
    assert isinstance(model.api, HuggingFaceAPI)
    return (await model.api._local.ensure_loaded()).loaded


def direct_logprobs(loaded: Loaded, ids: list[int]) -> list[float]:
    """log p(ids[i] | ids[:i]) for i >= 1, from one unbatched forward pass."""
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [float(logprobs[i, ids[i + 1]]) for i in range(len(ids) - 1)]


async def test_correct_answer_is_greedy_and_likely_wrong_one_is_not() -> None:
    model = tiny()
    right, wrong, eos = await model.score(
        [
            LoglikelihoodRequest(prompt("What is 2+3?"), "5"),
            LoglikelihoodRequest(prompt("What is 2+3?"), "7"),
            LoglikelihoodRequest(prompt("What is 2+3?"), "5<|eos|>"),
        ]
    )
    assert right.is_greedy and right.tokens == 1
    assert -0.1 < right.logprob <= 0.0
    assert not wrong.is_greedy and wrong.logprob < right.logprob - 5
    # The answer then the end of turn: two tokens, both greedy.
    assert eos.is_greedy and eos.tokens == 2 and eos.logprob < right.logprob
    # Usage: every token the model read was counted.
    assert model.usage.input_tokens > 0


async def test_sum_equals_direct_torch_computation() -> None:
    model = tiny()
    loaded = await loaded_of(model)
    context, continuation = prompt("What is 41+17?"), "58<|eos|>"
    [result] = await model.score([LoglikelihoodRequest(context, continuation)])
    tok = HFTokenizer(loaded.tokenizer)
    ctx_ids, cont_ids = tok.encode(context), tok.encode(continuation)
    expected = direct_logprobs(loaded, ctx_ids + cont_ids)[-len(cont_ids) :]
    assert result.tokens == len(cont_ids) == 3
    assert result.logprob == pytest.approx(sum(expected), abs=1e-5)


async def test_batch_of_many_equals_one_by_one() -> None:
    model = tiny()
    rows = held_out(40)
    # Different lengths in one padded batch: questions and answers of 1-3 digits.
    requests = [
        LoglikelihoodRequest(prompt(r["input"]), answer)
        for r in rows
        for answer in (r["target"], str(int(r["target"]) + 11))
    ]
    batched = await model.score(requests)
    single = [(await model.score([r]))[0] for r in requests]
    assert len(batched) == len(single) == 80
    for b, s in zip(batched, single, strict=True):
        # float32 kernels differ with the batch's shape (which ones depends on the
        # CPU: on an AMD EPYC one pair of 80 differed by 1.4e-5 at -14.87, 15 ulps):
        # 1e-6 relative, or 1e-5 absolute near 0. A padding or masking bug is >= 1e-3.
        assert b.logprob == pytest.approx(s.logprob, rel=1e-6, abs=1e-5)
        assert b.is_greedy == s.is_greedy and b.tokens == s.tokens


async def test_multiple_choice_by_loglikelihood_picks_the_sum() -> None:
    model = tiny()
    rows = held_out(50)
    # Whole answers (ending the turn), so "3" is not a prefix of "37".
    options = [[int(r["target"]) + d for d in (0, 1, 10, 100)] for r in rows]
    pairs = [
        (prompt(r["input"]), f"{o}<|eos|>")
        for r, row_options in zip(rows, options, strict=True)
        for o in row_options
    ]
    scores = await model.loglikelihood(pairs)
    picked = [_best(scores[4 * i : 4 * i + 4]) for i in range(len(rows))]
    assert picked.count(0) / len(rows) >= 0.96, picked
    # The right answer is the greedy continuation too.
    assert sum(scores[4 * i][1] for i in range(len(rows))) >= 48


def _best(scores: list[tuple[float, bool]]) -> int:
    return max(range(len(scores)), key=lambda j: scores[j][0])


async def test_rolling_equals_direct_sum_for_a_short_text() -> None:
    model = tiny()
    loaded = await loaded_of(model)
    text = "<|user|>What is 12+30?<|assistant|>42<|eos|>"
    [result] = await model.score_rolling([text])
    tok = HFTokenizer(loaded.tokenizer)
    ids = [loaded.tokenizer.bos_token_id, *tok.encode(text)]
    assert result.tokens == len(ids) - 1
    assert result.logprob == pytest.approx(sum(direct_logprobs(loaded, ids)), abs=1e-4)


async def test_rolling_long_text_scores_every_token_once_in_windows() -> None:
    model = tiny()
    loaded = await loaded_of(model)
    length = max_length_of(loaded)
    assert length == 512  # the bundled model's context
    text = "".join(prompt(r["input"]) + r["target"] + "<|eos|>" for r in held_out(120))
    tok = HFTokenizer(loaded.tokenizer)
    ids = tok.encode(text)
    assert len(ids) > 2 * length
    # Direct: the first `length` tokens from bos; then each next block of up to
    # `length` tokens from the `length` tokens before its last one.
    expected = sum(direct_logprobs(loaded, [loaded.tokenizer.bos_token_id, *ids[:length]]))
    start = length
    while start < len(ids):
        end = min(start + length, len(ids))
        window = ids[end - length - 1 : end]
        expected += sum(direct_logprobs(loaded, window)[-(end - start) :])
        start = end
    [result] = await model.score_rolling([text])
    assert result.tokens == len(ids)
    assert result.logprob == pytest.approx(expected, abs=1e-3)
    assert await model.loglikelihood_rolling([text]) == [result.logprob]


async def test_prompt_logprobs_ranks_and_top_alternatives() -> None:
    model = tiny()
    loaded = await loaded_of(model)
    tok = HFTokenizer(loaded.tokenizer)
    short = tok.encode(prompt("What is 2+3?") + "5")
    long = tok.encode(prompt("What is 77+22?") + "99<|eos|>")
    scores: Any = prompt_logprobs(loaded, [short, long, short[:1]], top_k=3)
    assert [len(s) for s in scores] == [len(short) - 1, len(long) - 1, 0]
    answer = scores[0][-1]
    assert answer.token_id == short[-1] and answer.rank == 1
    assert len(answer.top) == 3 and answer.top[0] == (answer.token_id, answer.logprob)
    assert answer.top[0][1] >= answer.top[1][1] >= answer.top[2][1]
    for position, score in enumerate(scores[1]):
        assert score.token_id == long[position + 1]
        assert score.rank >= 1 and score.logprob <= 0
    assert [s.logprob for s in scores[1]] == pytest.approx(direct_logprobs(loaded, long), abs=1e-5)
    with pytest.raises(ConfigError, match="top_k"):
        prompt_logprobs(loaded, [short], top_k=-1)


async def test_unscorable_requests_are_clear_errors() -> None:
    model = tiny()
    with pytest.raises(ConfigError, match="empty continuation"):
        await model.loglikelihood([(prompt("What is 1+1?"), "")])
    too_long = "7" * 600
    with pytest.raises(ConfigError, match="longer than the model's 512-token context"):
        await model.loglikelihood([(prompt("What is 1+1?"), too_long)])


async def test_empty_context_scores_from_bos() -> None:
    model = tiny()
    loaded = await loaded_of(model)
    [result] = await model.score([LoglikelihoodRequest("", "<|user|>What")])
    tok = HFTokenizer(loaded.tokenizer)
    ids = [loaded.tokenizer.bos_token_id, *tok.encode("<|user|>What")]
    assert result.tokens == len(ids) - 1
    assert result.logprob == pytest.approx(sum(direct_logprobs(loaded, ids)), abs=1e-5)


async def test_concurrent_calls_share_forward_passes() -> None:
    model = tiny()
    await model.loglikelihood([(prompt("What is 1+1?"), "2")])  # load the model
    rows = held_out(16)
    calls = [
        [(prompt(r["input"]), f"{int(r['target']) + d}<|eos|>") for d in (0, 1, 10, 100)]
        for r in rows
    ]
    assert isinstance(model.api, HuggingFaceAPI)
    queue = score_queue(model.api._local)
    before = len(queue.runs)
    together = await asyncio.gather(*(model.loglikelihood(c) for c in calls))
    runs = queue.runs[before:]
    assert sum(runs) == 16 and len(runs) < 16, runs
    alone = [await model.loglikelihood(c) for c in calls]
    for a, b in zip(together, alone, strict=True):
        assert [x[0] for x in a] == pytest.approx([x[0] for x in b], abs=1e-5)
        assert [x[1] for x in a] == [x[1] for x in b]


async def test_a_bad_call_does_not_fail_the_calls_it_shares_a_run_with() -> None:
    model = tiny()
    good = [(prompt("What is 2+3?"), "5")]
    bad = [(prompt("What is 2+3?"), "5" * 600)]
    results = await asyncio.gather(
        model.loglikelihood(good), model.loglikelihood(bad), return_exceptions=True
    )
    assert isinstance(results[1], ConfigError)
    assert isinstance(results[0], list) and results[0][0][1] is True


def test_lm_eval_batch_size_and_tokenizer_args_are_understood() -> None:
    from gauge.model.providers.hf.loading import bundled_path

    model = get_model("hf/gauge-tiny", batch_size="4", tokenizer=str(bundled_path()), memoize=False)
    assert model.api.max_connections() == 4 and model.api.score_batch_size() == 4
    with pytest.raises(ConfigError, match=r"-M batch_size=0 must be a whole number >= 1"):
        get_model("hf/gauge-tiny", batch_size="0", memoize=False)
