"""Issue #9's check: loglikelihood through `gauge serve`'s completions equals hf in process.

The bundled gauge-tiny model is served by the transformers engine on
127.0.0.1 and scored through `openai-api-completions/local/gauge-tiny` (echo +
logprobs, max_tokens 0, token-id prompts from the server's /tokenize or a local
tokenizer); the same items are scored by `hf/gauge-tiny` in process. Each item
must agree within 1e-4 nats, and a 200-question multiple-choice set
("What is A+B?" with 4 candidate sums) must get the same picks.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from gauge.model import get_model
from gauge.model.scoring import rolling_windows
from gauge.model.tokenization import load_tokenizer

TINY = Path(__file__).resolve().parents[2] / "src" / "gauge" / "assets" / "gauge-tiny"
TOLERANCE = 1e-4


def multiple_choice(n: int = 200, seed: int = 9) -> list[tuple[str, list[str], int]]:
    """(chat-formatted question, 4 candidate sums, index of the right one)."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(100)
        right = a + b
        wrong: set[int] = set()
        while len(wrong) < 3:
            other = right + rng.choice([-11, -10, -2, -1, 1, 2, 9, 10, 11, 20])
            if other >= 0 and other != right:
                wrong.add(other)
        choices = [str(x) for x in [right, *sorted(wrong)]]
        rng.shuffle(choices)
        # The model's own prompt format (its chat template, written out), so it answers well.
        items.append((f"<|user|>What is {a}+{b}?<|assistant|>", choices, choices.index(str(right))))
    return items


async def scores(model_name: str, pairs: list[tuple[str, str]], **args: Any) -> list[Any]:
    async with get_model(model_name, **args) as model:
        return await model.loglikelihood(pairs)


async def test_served_completions_score_as_hf_in_process(tiny_server: Any) -> None:
    items = multiple_choice()
    pairs = [(context, choice) for context, choices, _ in items for choice in choices]
    assert len(pairs) == 800
    local = await scores("hf/gauge-tiny", pairs)
    # No tokenizer given: the provider tokenizes through the server's /tokenize.
    served = await scores(
        "openai-api-completions/local/gauge-tiny", pairs, base_url=tiny_server.url, batch_size=8
    )
    # A local copy of the model's tokenizer gives the same token ids, so the same scores.
    with_tokenizer = await scores(
        "openai-api-completions/local/gauge-tiny",
        pairs[:40],
        base_url=tiny_server.url,
        tokenizer=str(TINY),
    )
    for (context, continuation), mine, theirs in zip(pairs, local, served, strict=True):
        assert abs(mine[0] - theirs[0]) <= TOLERANCE, (context, continuation, mine, theirs)
        assert mine[1] == theirs[1], (context, continuation, mine, theirs)
    for mine, theirs in zip(local[:40], with_tokenizer, strict=True):
        assert abs(mine[0] - theirs[0]) <= TOLERANCE

    def picks(results: list[Any]) -> list[int]:
        out = []
        for i in range(len(items)):
            row = [results[4 * i + j][0] for j in range(4)]
            out.append(row.index(max(row)))
        return out

    assert picks(served) == picks(local)
    right = sum(p == answer for p, (_, _, answer) in zip(picks(local), items, strict=True))
    assert right >= 180  # the tiny model knows its sums: the check is not vacuous


async def test_served_rolling_loglikelihood_matches_hf(tiny_server: Any) -> None:
    texts = ["What is 12+30? 42", "<|user|>What is 7+85?<|assistant|>92"]
    long_text = "What is 1+1? 2\n" * 20  # 300 characters: several windows of 128 tokens
    async with get_model("hf/gauge-tiny") as model:
        local = await model.loglikelihood_rolling(texts)
        # The windows the served run uses (lm-eval's API models: max_length - 1 per
        # window), scored in process as plain pairs: gauge-tiny is one token per
        # character, so decoding a window's ids gives back exactly those ids.
        tokenizer = load_tokenizer(str(TINY))
        windows = rolling_windows(tokenizer.encode(long_text), 1, 127)
        assert len(windows) == 3
        pieces = await model.loglikelihood(
            [(tokenizer.decode(c), tokenizer.decode(t)) for c, t in windows]
        )
    # The server adds no bos, so the prefix token comes from the local tokenizer files.
    async with get_model(
        "openai-api-completions/local/gauge-tiny",
        base_url=tiny_server.url,
        tokenizer=str(TINY),
        max_length=128,
    ) as model:
        served = await model.loglikelihood_rolling([*texts, long_text])
    for mine, theirs in zip(local, served, strict=False):
        assert abs(mine - theirs) <= TOLERANCE * 10  # sums over ~20 tokens
    assert abs(served[2] - sum(p[0] for p in pieces)) <= TOLERANCE * 100  # ~300 tokens
    # Without local tokenizer files the ids come from /tokenize and the prefix
    # token from /tokenizer_info (bos, else eos: lm-eval's remote-tokenizer rule).
    async with get_model(
        "openai-api-completions/local/gauge-tiny", base_url=tiny_server.url
    ) as model:
        remote = await model.loglikelihood_rolling(texts)
    for mine, theirs in zip(local, remote, strict=True):
        assert abs(mine - theirs) <= TOLERANCE * 10


async def test_served_chat_prompt_logprobs_score_as_hf_in_process(tiny_server: Any) -> None:
    # gauge-tiny's chat template renders [user: q, assistant: a] (the answer left open)
    # as "<|user|>q<|assistant|>a": the chat path must score exactly the plain pair.
    items = multiple_choice(20, seed=3)
    questions = [(context.removeprefix("<|user|>").split("<|")[0], c) for context, c, _ in items]
    pairs = [(q, choice) for q, choices in questions for choice in choices]
    local = await scores(
        "hf/gauge-tiny", [(f"<|user|>{q}<|assistant|>", choice) for q, choice in pairs]
    )
    served = await scores("openai-api/local/gauge-tiny", pairs, base_url=tiny_server.url)
    local_template = await scores(
        "openai-api/local/gauge-tiny", pairs[:8], base_url=tiny_server.url, tokenizer=str(TINY)
    )
    for mine, theirs in zip(local, served, strict=True):
        assert abs(mine[0] - theirs[0]) <= TOLERANCE and mine[1] == theirs[1]
    for mine, theirs in zip(local[:8], local_template, strict=True):
        assert abs(mine[0] - theirs[0]) <= TOLERANCE
