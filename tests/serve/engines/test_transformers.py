"""The transformers engine serving the bundled gauge-tiny model, through the openai SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessageUser

QUESTION = "What is 12+7?"


@pytest.fixture
def client(tiny_server: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=tiny_server.url, api_key="x", max_retries=0) as c:
        yield c


def test_chat_matches_the_in_process_provider(client: openai.OpenAI, check_schema: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gauge-tiny",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
    )
    check_schema("CreateChatCompletionResponse", raw.http_response.json())
    served = raw.parse()

    async def local() -> Any:
        model = get_model("hf/gauge-tiny", device="cpu")
        return await model.generate(QUESTION, config=GenerateConfig(max_tokens=6, logprobs=True))

    expected = asyncio.run(local())
    assert served.choices[0].message.content == expected.completion == "19"
    assert served.usage is not None and expected.usage is not None
    assert served.usage.prompt_tokens == expected.usage.input_tokens
    assert served.usage.completion_tokens == expected.usage.output_tokens
    lps = served.choices[0].logprobs
    assert lps is not None and lps.content is not None
    assert [t.token for t in lps.content] == ["1", "9"]
    assert len(lps.content[0].top_logprobs) == 3
    assert lps.content[0].top_logprobs[0].logprob == pytest.approx(lps.content[0].logprob)


def test_completions_prompt_forms_n_and_echo(client: openai.OpenAI, check_schema: Any) -> None:
    tokens = client.completions.create(model="gauge-tiny", prompt="x", max_tokens=1, echo=True)
    assert tokens.choices[0].text.startswith("x")
    raw = client.completions.with_raw_response.create(
        model="gauge-tiny", prompt=["1+1=", "2+2="], n=2, max_tokens=4, logprobs=2
    )
    check_schema("CreateCompletionResponse", raw.http_response.json())
    reply = raw.parse()
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert reply.choices[0].text == reply.choices[1].text  # greedy: n copies agree
    lp = reply.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and lp.top_logprobs is not None
    assert "".join(lp.tokens).startswith(reply.choices[0].text)
    assert all(len(top) <= 2 for top in lp.top_logprobs)


def test_stop_sampling_extras_and_token_ids(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(
        model="gauge-tiny", messages=[{"role": "user", "content": "What is 45+45?"}]
    )
    assert full.choices[0].message.content == "90"
    cut = client.chat.completions.create(
        model="gauge-tiny", messages=[{"role": "user", "content": "What is 45+45?"}], stop=["0"]
    )
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("9", "stop")
    kept = client.chat.completions.create(
        model="gauge-tiny",
        messages=[{"role": "user", "content": "What is 45+45?"}],
        stop=["0"],
        extra_body={"include_stop_str_in_output": True},
    )
    assert kept.choices[0].message.content == "90"
    sampled = [
        client.chat.completions.create(
            model="gauge-tiny",
            messages=[{"role": "user", "content": "What is 3+4?"}],
            temperature=1.5,
            seed=11,
            max_tokens=5,
            extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2},
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]  # seeded: same output twice


def test_streaming_chat(client: openai.OpenAI, check_schema: Any) -> None:
    stream = client.chat.completions.create(
        model="gauge-tiny",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c.model_dump(mode="json", exclude_unset=True) for c in stream]
    for chunk in chunks:
        check_schema("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "19"
    assert chunks[-1]["usage"]["completion_tokens"] == 3  # "1", "9", EOS


def test_unhonoured_fields_are_refused(client: openai.OpenAI) -> None:
    # ignore_eos, skip_special_tokens and beam search are honoured (see
    # tests/compat/test_worker_vllm.py); best_of above n, or the beam-only
    # settings, without beam search are not.
    for field, value in [
        ("best_of", 3),
        ("length_penalty", 0.5),
        ("early_stopping", True),
    ]:
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="gauge-tiny", prompt="1+1=", extra_body={field: value})
        assert info.value.response.json()["error"]["param"] == field
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gauge-tiny", prompt="x " * 5000, max_tokens=4)
    assert "context" in info.value.response.json()["error"]["message"]


async def test_settings_reach_the_engine(tmp_path: Any) -> None:
    from gauge.serve.engines.base import EngineRequest, SamplingParams
    from gauge.serve.engines.transformers import TransformersEngine
    from gauge.serve.settings import load_settings

    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}=")
    env = {"MAX_MODEL_LEN": "40", "CUSTOM_CHAT_TEMPLATE": str(template), "SEED": "5"}
    engine = TransformersEngine.from_settings(load_settings({}, env))
    await engine.start()
    try:
        assert engine.max_model_len == 40
        assert engine.phases.load is not None and engine.phases.warmup is not None
        request = EngineRequest(SamplingParams(max_tokens=100), prompt="1+1")
        result = await engine.generate(request)
        # The context cap: prompt + output stop at MAX_MODEL_LEN.
        assert result.prompt_tokens + result.choices[0].tokens <= 40
        from gauge.serve.engines.base import TokenizeRequest

        chat = TokenizeRequest(messages=[ChatMessageUser(content="7+1")])
        # The custom template renders the turn as "7+1=".
        assert await engine.detokenize(await engine.tokenize(chat)) == "7+1="
    finally:
        await engine.close()


def test_stop_token_ids_and_repetition_penalty(client: openai.OpenAI) -> None:
    from transformers import AutoTokenizer

    from gauge.model.providers.hf.loading import bundled_path

    zero = AutoTokenizer.from_pretrained(str(bundled_path())).convert_tokens_to_ids("0")
    ask = [{"role": "user", "content": "What is 45+45?"}]
    cut = client.chat.completions.create(
        model="gauge-tiny", messages=ask, extra_body={"stop_token_ids": [zero]}
    )
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("9", "stop")
    assert cut.usage is not None and cut.usage.completion_tokens == 2  # "9" and the stop id
    kept = client.chat.completions.create(
        model="gauge-tiny",
        messages=ask,
        extra_body={"stop_token_ids": [zero], "include_stop_str_in_output": True},
    )
    assert kept.choices[0].message.content == "90"
    eleven = [{"role": "user", "content": "What is 11+11?"}]
    plain = client.chat.completions.create(model="gauge-tiny", messages=eleven, max_tokens=4)
    assert plain.choices[0].message.content == "22"
    penalised = client.chat.completions.create(
        model="gauge-tiny",
        messages=eleven,
        max_tokens=4,
        extra_body={"repetition_penalty": 100.0},
    )
    # The second "2" repeats an output token: a huge penalty rules it out.
    text = penalised.choices[0].message.content
    assert text is not None and text.startswith("2") and text != "22"


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"stop": ["0"]},
        {"stop": ["22220", "x"], "n": 2, "temperature": 1.0, "seed": 3},
        {"stop": ["2220"]},
        {"stop": ["3"], "include_stop_str_in_output": True},
        {"echo": True},
    ],
)
def test_streamed_text_equals_the_whole_answer(
    client: openai.OpenAI, extra: dict[str, Any]
) -> None:
    kwargs: dict[str, Any] = {
        "model": "gauge-tiny",
        "prompt": "12+30=42 7+8=15 20+",
        "max_tokens": 12,
    }
    # Banning EOS (id 2) makes the tiny model write all 12 tokens: "402222222033".
    options = {"logit_bias": {"2": -100}, **extra}
    n = options.pop("n", 1)
    whole = client.completions.create(**kwargs, n=n, extra_body=options)
    pieces: dict[int, list[str]] = {}
    finish: dict[int, str] = {}
    for chunk in client.completions.create(**kwargs, n=n, stream=True, extra_body=options):
        for c in chunk.choices:
            if c.text:
                pieces.setdefault(c.index, []).append(c.text)
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    assert len(whole.choices) == n
    for c in whole.choices:
        assert "".join(pieces.get(c.index, [])) == c.text
        assert finish[c.index] == c.finish_reason
    if not extra:
        # Token by token: the 12-token answer arrives in 12 chunks.
        assert whole.choices[0].text == "402222222033"
        assert len(pieces[0]) == 12
    if extra.get("stop") == ["2220"]:
        # Text that could start a stop sequence was held back, never sent past the cut.
        assert whole.choices[0].text == "402222"


def test_client_leaving_a_stream_does_not_hurt_the_next_request(
    tiny_server: Any, client: openai.OpenAI
) -> None:
    import urllib.request

    import orjson

    body = {
        "model": "gauge-tiny",
        "prompt": "1+",
        "max_tokens": 200,
        "logit_bias": {"2": -100},
        "stream": True,
    }
    request = urllib.request.Request(
        f"{tiny_server.url}/completions",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.readline().startswith(b"data: {")  # then hang up mid-stream
    after = client.chat.completions.create(
        model="gauge-tiny", messages=[{"role": "user", "content": "What is 45+45?"}]
    )
    assert after.choices[0].message.content == "90"
