"""Prompt logprobs through `gauge serve`: completions echo + logprobs (max_tokens 0 or more),
vLLM's prompt_logprobs and continue_final_message, against torch computed directly."""

from __future__ import annotations

import asyncio
import copy
import functools
import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import openai
import pytest

from gauge.serve.engines.base import BASIC_FIELDS, EngineRequest, SamplingParams
from gauge.serve.engines.mock import ALTERNATIVE_ID, MockEngine
from gauge.serve.engines.vllm import VLLMEngine
from gauge.serve.responses import text_offsets
from gauge.serve.schemas import APIError, parse_chat, parse_completion

PROMPT = "What is 12+7?"


@functools.cache
def reference() -> tuple[Any, Any]:
    """gauge-tiny loaded straight with transformers (float32, CPU): the ground truth."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from gauge.model.providers.hf.loading import bundled_path

    path = bundled_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, transformers.AutoTokenizer.from_pretrained(path)


def torch_logprobs(ids: list[int]) -> Any:
    """log_softmax of the logits; row i-1 scores token i."""
    import torch

    model, _ = reference()
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def chat_ids(messages: list[dict[str, str]], **template: Any) -> list[int]:
    _, tokenizer = reference()
    text = tokenizer.apply_chat_template(messages, tokenize=False, **template)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture
def client(tiny_server: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=tiny_server.url, api_key="x", max_retries=0) as c:
        yield c


def check_echo_body(check_schema: Any, body: dict[str, Any]) -> None:
    """The spec's arrays hold numbers/objects only, but echo's first token has null
    (as OpenAI and vLLM send): check the nulls, then the rest against the spec."""
    trimmed = copy.deepcopy(body)
    for choice in trimmed["choices"]:
        lp = choice["logprobs"]
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        del lp["token_logprobs"][0], lp["top_logprobs"][0]
        choice.pop("prompt_logprobs", None)  # vLLM's extension, not in OpenAI's spec
    check_schema("CreateCompletionResponse", trimmed)


# -- completions, transformers engine --------------------------------------------------


def test_echo_max_tokens_0_equals_torch(client: openai.OpenAI, check_schema: Any) -> None:
    _, tokenizer = reference()
    ids = list(tokenizer(PROMPT)["input_ids"])
    raw = client.completions.with_raw_response.create(
        model="gauge-tiny", prompt=PROMPT, echo=True, logprobs=3, max_tokens=0
    )
    body = raw.http_response.json()
    check_echo_body(check_schema, body)
    [choice] = body["choices"]
    assert choice["text"] == PROMPT and choice["finish_reason"] == "length"
    assert body["usage"] == {
        "prompt_tokens": len(ids),
        "completion_tokens": 0,
        "total_tokens": len(ids),
    }
    lp = choice["logprobs"]
    assert lp["tokens"] == tokenizer.convert_ids_to_tokens(ids)
    expected = torch_logprobs(ids)
    for i in range(1, len(ids)):
        assert lp["token_logprobs"][i] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-5)
        top = lp["top_logprobs"][i]
        values, alternatives = expected[i - 1].topk(3)
        want = {
            tokenizer.convert_ids_to_tokens(int(t)): float(v)
            for v, t in zip(values, alternatives, strict=True)
        }
        want.setdefault(lp["tokens"][i], float(expected[i - 1, ids[i]]))
        assert top.keys() == want.keys()  # the token itself and the top 3 (3 or 4 entries)
        for key, value in want.items():
            assert top[key] == pytest.approx(value, abs=1e-5)
    # Offsets index the returned text: each token's text starts where it says.
    assert lp["text_offset"] == [
        PROMPT.index(t, o) for t, o in zip(lp["tokens"], lp["text_offset"], strict=True)
    ]
    assert [
        choice["text"][o : o + len(t)] for t, o in zip(lp["tokens"], lp["text_offset"], strict=True)
    ] == lp["tokens"]


def test_token_id_prompts_score_exactly_those_ids(client: openai.OpenAI) -> None:
    _, tokenizer = reference()
    first = [tokenizer.bos_token_id, *tokenizer("12+7=19")["input_ids"]]
    second = list(tokenizer("3+4=7")["input_ids"])
    reply = client.completions.create(
        model="gauge-tiny", prompt=[first, second], echo=True, logprobs=0, max_tokens=0
    )
    assert [c.text for c in reply.choices] == ["12+7=19", "3+4=7"]
    assert reply.usage is not None and reply.usage.prompt_tokens == len(first) + len(second)
    for choice, ids in zip(reply.choices, [first, second], strict=True):
        lp = choice.logprobs
        assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
        assert lp.tokens == [tokenizer.convert_ids_to_tokens(t) for t in ids]
        expected = torch_logprobs(ids)
        got = lp.token_logprobs[1:]
        assert got == pytest.approx(
            [float(expected[i - 1, ids[i]]) for i in range(1, len(ids))], abs=1e-5
        )
    # BOS is not in the returned text: it has no width, and "1" starts at 0 too.
    lp = reply.choices[0].logprobs
    assert lp is not None and lp.text_offset is not None
    assert lp.text_offset[:3] == [0, 0, 1]
    assert lp.top_logprobs is not None and lp.top_logprobs[1] is not None
    assert list(lp.top_logprobs[1]) == [lp.tokens[1]]  # logprobs 0: the token alone


def test_echo_with_generation_extends_the_same_lists(client: openai.OpenAI) -> None:
    prompt = "What is 45+45?"
    plain = client.completions.create(model="gauge-tiny", prompt=prompt, max_tokens=3, logprobs=1)
    echo = client.completions.create(
        model="gauge-tiny", prompt=prompt, max_tokens=3, logprobs=1, echo=True
    )
    p, e = plain.choices[0], echo.choices[0]
    assert e.text == prompt + p.text and e.finish_reason == p.finish_reason
    assert p.logprobs is not None and e.logprobs is not None
    assert e.logprobs.tokens is not None and p.logprobs.tokens is not None
    n = len(e.logprobs.tokens) - len(p.logprobs.tokens)
    assert "".join(e.logprobs.tokens[:n]) == prompt
    assert e.logprobs.tokens[n:] == p.logprobs.tokens
    assert e.logprobs.token_logprobs is not None and p.logprobs.token_logprobs is not None
    assert e.logprobs.token_logprobs[n:] == pytest.approx(p.logprobs.token_logprobs, abs=1e-5)
    assert e.logprobs.text_offset is not None
    assert e.logprobs.text_offset[n:] == [len(prompt) + o for o in p.logprobs.text_offset or []]
    assert echo.usage is not None and plain.usage is not None
    assert echo.usage.completion_tokens == plain.usage.completion_tokens


def test_completions_prompt_logprobs_field_is_vllms(client: openai.OpenAI) -> None:
    _, tokenizer = reference()
    ids = list(tokenizer("7+1=8")["input_ids"])
    raw = client.completions.with_raw_response.create(
        model="gauge-tiny", prompt=ids, max_tokens=1, extra_body={"prompt_logprobs": 2}
    )
    choice = raw.http_response.json()["choices"][0]
    assert choice["logprobs"] is None  # logprobs not asked: only the vLLM field
    scores = choice["prompt_logprobs"]
    assert scores[0] is None and len(scores) == len(ids)
    expected = torch_logprobs(ids)
    for i in range(1, len(ids)):
        entry = scores[i][str(ids[i])]
        assert entry["logprob"] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-5)
        assert entry["rank"] == int((expected[i - 1] > expected[i - 1, ids[i]]).sum()) + 1
        assert entry["decoded_token"] == tokenizer.convert_ids_to_tokens(ids[i])
        assert {v["rank"] for k, v in scores[i].items() if k != str(ids[i])} <= {1, 2}


# -- chat, transformers engine ----------------------------------------------------------


def test_chat_prompt_logprobs_are_vllms_shape_and_torchs_values(
    client: openai.OpenAI, check_schema: Any
) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    ids = chat_ids(messages, add_generation_prompt=True)
    raw = client.chat.completions.with_raw_response.create(
        model="gauge-tiny", messages=messages, max_tokens=2, extra_body={"prompt_logprobs": 1}
    )
    body = raw.http_response.json()
    check_schema("CreateChatCompletionResponse", body)  # the extra top-level key is allowed
    assert body["usage"]["prompt_tokens"] == len(ids)
    scores = body["prompt_logprobs"]
    assert scores[0] is None and len(scores) == len(ids)
    expected = torch_logprobs(ids)
    for i in range(1, len(ids)):
        entries = scores[i]
        own = entries[str(ids[i])]
        assert own["logprob"] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-5)
        best = int(expected[i - 1].argmax())
        assert entries[str(best)]["rank"] == 1 and len(entries) in (1, 2)
        assert set(own) == {"logprob", "rank", "decoded_token"}
    assert body["choices"][0]["message"]["content"] == "19"


def test_continue_final_message_scores_an_assistant_answer(client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": "19"},
    ]
    ids = chat_ids(messages, continue_final_message=True)
    _, tokenizer = reference()
    assert tokenizer.decode(ids).endswith("<|assistant|>19")  # left open: no <|eos|>
    raw = client.chat.completions.with_raw_response.create(
        model="gauge-tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=0,
        extra_body={"prompt_logprobs": 0, "continue_final_message": True, "echo": True},
    )
    body = raw.http_response.json()
    choice = body["choices"][0]
    # vLLM's chat echo: the last message, as its role is the reply's here.
    assert choice["message"]["content"] == "19" and choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 0
    scores = body["prompt_logprobs"]
    expected = torch_logprobs(ids)
    answer = sum(scores[i][str(ids[i])]["logprob"] for i in (len(ids) - 2, len(ids) - 1))
    want = float(expected[len(ids) - 3, ids[-2]] + expected[len(ids) - 2, ids[-1]])
    assert answer == pytest.approx(want, abs=1e-5)
    # The model answers 19 greedily: both answer tokens are rank 1.
    assert [scores[i][str(ids[i])]["rank"] for i in (len(ids) - 2, len(ids) - 1)] == [1, 1]


def test_served_scores_equal_the_in_process_loglikelihood(client: openai.OpenAI) -> None:
    """The completions path gives the hf provider's own loglikelihood (lm-eval's rule)."""
    from gauge.model.factory import get_model
    from gauge.model.providers.hf.scoring import HFTokenizer
    from gauge.model.scoring import encode_pair

    _, tokenizer = reference()
    pairs = [("What is 12+7? ", "19"), ("2+2=", "4"), ("2+2=", "5")]

    async def local() -> list[tuple[float, bool]]:
        model = get_model("hf/gauge-tiny", device="cpu")
        return await model.loglikelihood(pairs)

    expected = asyncio.run(local())
    for (context, continuation), (logprob, greedy) in zip(pairs, expected, strict=True):
        context_ids, continuation_ids = encode_pair(HFTokenizer(tokenizer), context, continuation)
        reply = client.completions.create(
            model="gauge-tiny",
            prompt=context_ids + continuation_ids,
            echo=True,
            logprobs=1,
            max_tokens=0,
        )
        lp = reply.choices[0].logprobs
        assert lp is not None and lp.token_logprobs is not None and lp.top_logprobs is not None
        n = len(continuation_ids)
        assert sum(lp.token_logprobs[-n:]) == pytest.approx(logprob, abs=1e-4)
        served_greedy = all(
            max(top.values()) == value
            for top, value in zip(lp.top_logprobs[-n:], lp.token_logprobs[-n:], strict=True)
        )
        assert served_greedy == greedy


# -- errors ---------------------------------------------------------------------------


def test_errors_are_400_naming_the_field(client: openai.OpenAI, check_schema: Any) -> None:
    long_prompt = [5] * 600  # gauge-tiny's context is 512
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"prompt": "x", "echo": True, "logprobs": 21, "max_tokens": 0}, "logprobs"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "extra_body": {"prompt_logprobs": 21}}, "prompt_logprobs"),
        ({"prompt": "x", "echo": True, "logprobs": 1, "stream": True}, "stream"),
        ({"prompt": long_prompt, "echo": True, "logprobs": 1, "max_tokens": 0}, None),
        ({"prompt": [5, 10**7], "echo": True, "logprobs": 1, "max_tokens": 0}, None),
        ({"prompt": [5, 10**7], "max_tokens": 1}, None),
    ]
    for kwargs, field in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="gauge-tiny", **kwargs)
        body = info.value.response.json()
        check_schema("ErrorResponse", body)
        message = body["error"]["message"]
        assert "\n" not in message
        if field is not None:
            assert body["error"]["param"] == field and message.startswith(field)
    long = client.completions.with_raw_response.create  # the length message says what to do
    with pytest.raises(openai.BadRequestError) as info:
        long(model="gauge-tiny", prompt=long_prompt, echo=True, logprobs=1, max_tokens=0)
    assert "600 tokens" in info.value.response.json()["error"]["message"]
    assert "512" in info.value.response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gauge-tiny", prompt=[5, 10**7], max_tokens=1)
    assert "10000000 is not in the vocabulary" in info.value.response.json()["error"]["message"]
    chat_cases: list[tuple[dict[str, Any], str]] = [
        ({"continue_final_message": True, "add_generation_prompt": True}, "continue_final_message"),
        ({"prompt_logprobs": 25}, "prompt_logprobs"),
        ({"prompt_logprobs": "2"}, "prompt_logprobs"),
    ]
    for extra, field in chat_cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="gauge-tiny", messages=[{"role": "user", "content": "x"}], extra_body=extra
            )
        assert info.value.response.json()["error"]["param"] == field
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gauge-tiny", messages=[{"role": "user", "content": "x"}], max_tokens=0
        )
    assert info.value.response.json()["error"]["param"] == "max_tokens"


# -- batching ---------------------------------------------------------------------------


async def test_concurrent_scoring_requests_share_one_batch() -> None:
    pytest.importorskip("torch")
    from gauge.serve.engines.transformers import TransformersEngine
    from gauge.serve.settings import Settings

    engine = TransformersEngine.from_settings(Settings())
    await engine.start()
    try:
        prompts = ["1+1=2", "22+3=25", "7+7=14", "9+1=10"]
        requests = [
            EngineRequest(SamplingParams(max_tokens=0), prompt=p, echo=True, prompt_logprobs=1)
            for p in prompts
        ]
        results = await asyncio.gather(*(engine.generate(r) for r in requests))
        assert list(engine.prompt_batches) == [4]
        alone = await engine.generate(requests[1])
        assert alone.prompt_logprobs is not None and results[1].prompt_logprobs is not None
        # Scored in a padded batch or alone: the same values.
        assert [p.logprob for p in alone.prompt_logprobs[1:]] == pytest.approx(
            [p.logprob for p in results[1].prompt_logprobs[1:]], abs=1e-5
        )
        assert [c.text for r in results for c in r.choices] == prompts
    finally:
        await engine.close()


# -- mock engine ------------------------------------------------------------------------


def test_mock_engine_prompt_logprobs_are_deterministic_and_consistent(
    serve: Any, check_schema: Any
) -> None:
    server = serve(MockEngine("mock-model"))
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
        bodies = [
            client.completions.with_raw_response.create(
                model="mock-model", prompt="a b c d", echo=True, logprobs=2, max_tokens=0
            ).http_response.json()
            for _ in range(2)
        ]
        first, second = (b["choices"][0]["logprobs"] for b in bodies)
        assert first == second
        check_echo_body(check_schema, bodies[0])
        assert first["tokens"] == ["a", " b", " c", " d"]
        assert first["text_offset"] == [0, 1, 3, 5]
        for value, top in zip(first["token_logprobs"][1:], first["top_logprobs"][1:], strict=True):
            assert max(top.values()) >= value and len(top) in (2, 3)
        chat = client.chat.completions.with_raw_response.create(
            model="mock-model",
            messages=[{"role": "user", "content": "x y z"}],
            extra_body={"prompt_logprobs": 3},
        ).http_response.json()
        scores = chat["prompt_logprobs"]
        assert scores[0] is None and len(scores) == 3
        for entries in scores[1:]:
            ranked = sorted(entries.values(), key=lambda e: e["rank"])
            values = [e["logprob"] for e in ranked]
            assert values == sorted(values, reverse=True) and ranked[0]["rank"] == 1
            for key, entry in entries.items():
                if entry["decoded_token"].startswith("~"):  # a made-up alternative
                    assert key == str(ALTERNATIVE_ID + entry["rank"])


# -- vllm engine (fake AsyncLLMEngine: no GPU) -------------------------------------------


class _Tokenizer:
    chat_template = "x"
    all_special_ids = [0]

    def __init__(self) -> None:
        self.templates: list[dict[str, Any]] = []

    def apply_chat_template(self, turns: list[dict[str, str]], **kwargs: Any) -> str:
        self.templates.append(kwargs)
        close = "" if kwargs.get("continue_final_message") else "</s>"
        return "".join(f"<{t['role']}>{t['content']}{close}" for t in turns)

    def decode(self, ids: list[int]) -> str:
        return "".join(f"t{i}" for i in ids)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [len(w) for w in text.split()]


class _FakeVLLM:
    """One RequestOutput with vLLM's prompt_logprobs shape; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.tokenizer = _Tokenizer()

    def get_tokenizer(self) -> _Tokenizer:
        return self.tokenizer

    async def generate(self, prompt: dict[str, Any], params: Any, request_id: str) -> Any:
        self.calls.append((prompt, params))

        def lp(value: float, rank: int, text: str) -> Any:
            return SimpleNamespace(logprob=value, rank=rank, decoded_token=text)

        scores = [
            None,
            {7: lp(-0.5, 1, "seven")},
            {8: lp(-2.0, 3, "eight"), 7: lp(-0.2, 1, "seven"), 9: lp(-1.0, 2, "nine")},
        ]
        output = SimpleNamespace(
            index=0, text="X", token_ids=[4], finish_reason="length", logprobs=None
        )
        yield SimpleNamespace(
            outputs=[output],
            prompt_token_ids=[0, 7, 8],
            prompt_logprobs=scores if params.get("prompt_logprobs") is not None else None,
        )


async def test_vllm_engine_maps_prompt_logprobs_both_ways() -> None:
    fake = _FakeVLLM()
    engine = VLLMEngine("org/model", engine=fake, sampling_params=lambda **kw: kw)
    await engine.start()
    body = {
        "model": "org/model",
        "prompt": [0, 7, 8],
        "echo": True,
        "logprobs": 1,
        "max_tokens": 0,
    }
    [request] = parse_completion(body, engine.honours, engine.name).requests
    result = await engine.generate(request)
    _, params = fake.calls[-1]
    assert params["prompt_logprobs"] == 1 and params["max_tokens"] == 1  # vLLM needs >= 1
    assert [c.text for c in result.choices] == ["t0t7t8"]  # the generated "X" is dropped
    assert result.completion_tokens == 0 and result.prompt_tokens == 3
    scores = result.prompt_logprobs
    assert scores is not None
    assert [(s.token_id, s.token, s.logprob, s.rank, s.special) for s in scores] == [
        (0, "t0", None, None, True),
        (7, "seven", -0.5, 1, False),
        (8, "eight", -2.0, 3, False),
    ]
    assert scores[2].top == [(7, "seven", -0.2, 1)]  # k = 1: rank 2 is cut
    chat = {
        "model": "org/model",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "continue_final_message": True,
        "prompt_logprobs": 2,
        "max_tokens": 1,
    }
    [request] = parse_chat(chat, engine.honours, engine.name).requests
    result = await engine.generate(request)
    prompt, params = fake.calls[-1]
    # Templated (left open), then tokenized without adding a BOS: the template has its own.
    assert prompt == {"prompt_token_ids": [len("<user>q<assistant>a")]}
    assert params["prompt_logprobs"] == 2
    assert fake.tokenizer.templates[-1] == {
        "tokenize": False,
        "add_generation_prompt": False,
        "continue_final_message": True,
    }
    assert result.choices[0].text == "X" and result.prompt_logprobs is not None
    assert [t[0] for t in result.prompt_logprobs[2].top] == [7, 9]


def test_vllm_engine_served_prompt_logprobs(serve: Any) -> None:
    engine = VLLMEngine("org/model", engine=_FakeVLLM(), sampling_params=lambda **kw: kw)
    server = serve(engine, model_name="org/model")
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
        body = client.chat.completions.with_raw_response.create(
            model="org/model",
            messages=[{"role": "user", "content": "q"}],
            extra_body={"prompt_logprobs": 1},
        ).http_response.json()
    assert body["prompt_logprobs"] == [
        None,
        {"7": {"logprob": -0.5, "rank": 1, "decoded_token": "seven"}},
        {
            "8": {"logprob": -2.0, "rank": 3, "decoded_token": "eight"},
            "7": {"logprob": -0.2, "rank": 1, "decoded_token": "seven"},
        },
    ]
    assert not math.isnan(body["prompt_logprobs"][2]["8"]["logprob"])


def test_continue_final_message_generates_and_streams_the_rest(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "user", "content": "What is 45+45?"},
        {"role": "assistant", "content": "9"},
    ]
    extra = {"continue_final_message": True}
    whole = client.chat.completions.create(model="gauge-tiny", messages=messages, extra_body=extra)
    assert whole.choices[0].message.content == "0"  # the model's 90, continued after "9"
    echoed = client.chat.completions.create(
        model="gauge-tiny", messages=messages, extra_body={**extra, "echo": True}
    )
    assert echoed.choices[0].message.content == "90"
    stream = client.chat.completions.create(
        model="gauge-tiny", messages=messages, stream=True, extra_body={**extra, "echo": True}
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "90"
    # The default (add_generation_prompt) starts a new assistant turn: no echo of the user.
    fresh = client.chat.completions.create(
        model="gauge-tiny", messages=messages[:1], extra_body={"echo": True}
    )
    assert fresh.choices[0].message.content == "90"


# -- parsing and offsets (no server) -----------------------------------------------------


def test_parse_rules_for_scoring_requests() -> None:
    honours = BASIC_FIELDS | {
        "echo",
        "prompt_logprobs",
        "continue_final_message",
        "add_generation_prompt",
    }
    base = {"model": "m", "prompt": "x"}
    [r] = parse_completion(
        {**base, "echo": True, "logprobs": 2, "max_tokens": 0}, honours, "t"
    ).requests
    assert (r.echo, r.prompt_logprobs, r.sampling.max_tokens) == (True, 2, 0)
    # One scoring pass serves both asks: the larger k.
    parsed = parse_completion(
        {**base, "echo": True, "logprobs": 1, "prompt_logprobs": 3}, honours, "t"
    )
    assert parsed.requests[0].prompt_logprobs == 3 and parsed.prompt_logprobs == 3
    # Without echo, logprobs are the generated tokens' only: nothing to score.
    assert (
        parse_completion({**base, "logprobs": 1}, honours, "t").requests[0].prompt_logprobs is None
    )
    refused = [
        ({**base, "echo": True, "logprobs": 1}, BASIC_FIELDS | {"echo"}, "echo"),
        ({**base, "max_tokens": 0}, honours, "max_tokens"),
        ({**base, "max_tokens": -1, "echo": True}, honours, "max_tokens"),
        ({**base, "prompt_logprobs": 1, "stream": True}, honours, "stream"),
        ({**base, "prompt_logprobs": 1}, BASIC_FIELDS, "prompt_logprobs"),
        ({**base, "continue_final_message": True}, honours, "continue_final_message"),
    ]
    for body, allowed, param in refused:
        with pytest.raises(APIError) as info:
            parse_completion(body, allowed, "t")
        assert info.value.param == param, body
    chat = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    answer = {**chat, "messages": [*chat["messages"], {"role": "assistant", "content": "a"}]}
    [r] = parse_chat(
        {**answer, "continue_final_message": True, "echo": True}, honours, "t"
    ).requests
    assert (r.add_generation_prompt, r.continue_final_message, r.echo_text) == (False, True, "a")
    [r] = parse_chat({**chat, "echo": True}, honours, "t").requests
    assert r.echo_text == ""  # the reply is the assistant's, the last message the user's
    [r] = parse_chat({**chat, "add_generation_prompt": False}, honours, "t").requests
    assert r.echo_text == "q"  # no new turn: the reply continues the user's message
    [r] = parse_chat({**answer, "echo": True}, honours, "t", response_role="assistant").requests
    assert r.echo_text == "a"
    [r] = parse_chat({**chat, "prompt_logprobs": 0, "max_tokens": 0}, honours, "t").requests
    assert r.sampling.max_tokens == 0 and r.prompt_logprobs == 0
    with pytest.raises(APIError) as info:
        parse_chat({**chat, "prompt_logprobs": 2, "stream": True}, honours, "t")
    assert info.value.param == "stream"


def test_text_offsets_follow_the_returned_text() -> None:
    # Special tokens have no width; SentencePiece's first word lost its space.
    assert text_offsets(["<s>", " Hello", " world"], [False, True, True], "Hello world") == [
        0,
        0,
        5,
    ]
    # A character split over two byte tokens: both start at the character.
    assert text_offsets(["a", "\ufffd", "\ufffd", "b"], [True] * 4, "aéb") == [0, 1, 1, 2]
    # Text the decoder normalised differently never breaks the order.
    offsets = text_offsets(["x", "??", "y"], [True] * 3, "x y")
    assert offsets == sorted(offsets) and offsets[0] == 0
