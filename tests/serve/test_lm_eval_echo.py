"""lm-eval's local-completions request shape against `gauge serve` (no lm-eval needed).

lm-eval scores with `prompt: [ids], echo: true, logprobs: 1, max_tokens: 1` and
sums `token_logprobs[ctxlen:-1]`: it drops the last entry as the generated
token. When the model's next token is EOS, that entry must still be there
(vLLM and OpenAI list it), else the continuation's last token is cut off.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gauge.model import get_model

CONTEXT = "<|user|>What is 2+3?<|assistant|>"


@pytest.fixture
def client(tiny_server: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=tiny_server.url, api_key="x", max_retries=0) as c:
        yield c


def tiny_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    from gauge.model.providers.hf.loading import bundled_path

    return transformers.AutoTokenizer.from_pretrained(bundled_path())


def lm_eval_parse(choice: dict[str, Any], ctxlen: int) -> tuple[float, bool]:
    """LocalCompletionsAPI.parse_logprobs for one choice (lm-eval 0.4.x)."""
    values = choice["logprobs"]["token_logprobs"][ctxlen:-1]
    tops = choice["logprobs"]["top_logprobs"][ctxlen:-1]
    return sum(values), all(v == max(t.values()) for v, t in zip(values, tops, strict=True))


async def test_generated_eos_is_listed_and_lm_eval_sums_match_hf(client: openai.OpenAI) -> None:
    tokenizer = tiny_tokenizer()
    context = tokenizer(CONTEXT, add_special_tokens=False).input_ids
    whole = tokenizer(CONTEXT + "5", add_special_tokens=False).input_ids
    response = client.completions.create(
        model="gauge-tiny",
        prompt=[whole],
        echo=True,
        logprobs=1,
        max_tokens=1,
        temperature=0,
        seed=1234,
    )
    choice = response.model_dump()["choices"][0]
    logprobs = choice["logprobs"]
    assert choice["finish_reason"] == "stop"  # the model answered "5" then EOS
    # Every prompt token, then the generated EOS with its own finite logprob.
    assert len(logprobs["tokens"]) == len(whole) + 1
    assert logprobs["tokens"][-1] == "<|eos|>"
    eos_logprob = logprobs["token_logprobs"][-1]
    assert math.isfinite(eos_logprob) and -1.0 < eos_logprob <= 0.0
    assert logprobs["top_logprobs"][-1]["<|eos|>"] == eos_logprob

    got, greedy = lm_eval_parse(choice, len(context))
    model = get_model("hf/gauge-tiny", memoize=False)
    try:
        [(want, want_greedy)] = await model.loglikelihood([(CONTEXT, "5")])
        [(eos_want, _)] = await model.loglikelihood([(CONTEXT + "5", "<|eos|>")])
    finally:
        await model.close()
    assert eos_logprob == pytest.approx(eos_want, abs=1e-4)  # the real EOS logprob
    assert got == pytest.approx(want, abs=1e-4)
    assert got < -1e-4  # the continuation's token was scored, not dropped
    assert greedy is want_greedy is True


def test_plain_generation_lists_the_final_eos_too(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="gauge-tiny", prompt=CONTEXT + "5", max_tokens=3, logprobs=2, temperature=0
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop" and choice.text == ""
    assert choice.logprobs is not None and choice.logprobs.tokens == ["<|eos|>"]
    [value] = choice.logprobs.token_logprobs or []
    assert value is not None and math.isfinite(value)
    top = (choice.logprobs.top_logprobs or [{}])[0]
    assert len(top) == 2 and max(top.values()) == value  # EOS is the argmax here
