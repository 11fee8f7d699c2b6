"""Loglikelihood over OpenAI-compatible endpoints, against a fake vLLM-like server on 127.0.0.1.

The fake tokenizes with the bundled gauge-tiny tokenizer (one token per
character) and scores token `t` at prompt position `p` with the made-up model
`logprob(p, t) = -0.1 * ((7t + p) % 5)`: 0.0 is the greedy token; otherwise the
top-1 is `<|unk|>` at 0.0. So every expected number below is known exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tokenizers
from aiohttp import web

from gauge.errors import ConfigError, ModelError, UnsupportedFeature
from gauge.model import get_model
from gauge.model.providers._http import HttpClient
from gauge.model.providers.openai_compat.logprob_scores import (
    prompt_logprobs_score,
    score_positions,
    text_span,
)
from gauge.model.providers.openai_compat.scoring import PromptLogprobsAPI
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest, rolling_windows
from gauge.model.tokenization import ServerTokenizer

TINY = Path(__file__).parents[3] / "src" / "gauge" / "assets" / "gauge-tiny"
TOK = tokenizers.Tokenizer.from_file(str(TINY / "tokenizer.json"))
BOS, EOS, UNK, USER, ASSISTANT = 1, 2, 3, 5, 6


def logprob(position: int, token: int) -> float:
    return -0.1 * ((7 * token + position) % 5)


def ids(text: str) -> list[int]:
    return list(TOK.encode(text, add_special_tokens=False).ids)


def expected(prompt: list[int], first: int, end: int | None = None) -> Loglikelihood:
    end = len(prompt) if end is None else end
    values = [logprob(p, prompt[p]) for p in range(first, end)]
    return Loglikelihood(sum(values), all(v == 0.0 for v in values), end - first)


@dataclass
class Fake:
    """A vLLM-like server: /v1/completions (echo), /v1/chat/completions, /tokenize."""

    tokenize: bool = True
    add_bos: bool = False  # to text prompts, as vLLM does for Llama-style tokenizers
    logprobs: bool = True
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    def text_ids(self, text: str, special: bool) -> list[int]:
        return ([BOS] if special and self.add_bos else []) + ids(text)

    def chat_ids(self, body: dict[str, Any]) -> list[int]:
        out: list[int] = []
        messages = body["messages"]
        for i, message in enumerate(messages):
            role = USER if message["role"] == "user" else ASSISTANT
            out += [role, *ids(message["content"])]
            last = i == len(messages) - 1
            if role == ASSISTANT and not (last and body.get("continue_final_message")):
                out.append(EOS)
        if body.get("add_generation_prompt", True):
            out.append(ASSISTANT)
        return out

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        prompts = body["prompt"]
        choices = []
        for index, prompt in enumerate(prompts):
            tokens = prompt if isinstance(prompt, list) else self.text_ids(prompt, True)
            choices.append({"index": index, "text": "", "logprobs": self.echo(tokens)})
        # Answer in reverse order: the client must order choices by index.
        total = sum(len(p) for p in prompts)
        return web.json_response(
            {"choices": choices[::-1], "usage": {"prompt_tokens": total, "total_tokens": total}}
        )

    def echo(self, tokens: list[int]) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        texts = [TOK.id_to_token(t) for t in tokens]
        offsets = [sum(len(t) for t in texts[:i]) for i in range(len(texts))]
        values: list[float | None] = [None]
        tops: list[dict[str, float] | None] = [None]
        for position, token in enumerate(tokens[1:], start=1):
            value = logprob(position, token)
            values.append(value)
            top = {texts[position]: value}
            if value < 0:
                top["<|unk|>"] = 0.0
            tops.append(top)
        return {
            "tokens": texts,
            "token_logprobs": values,
            "top_logprobs": tops,
            "text_offset": offsets,
        }

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        answer: dict[str, Any] = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        if self.logprobs and body.get("prompt_logprobs"):
            prompt = self.chat_ids(body)
            positions: list[dict[str, Any] | None] = [None]
            for position, token in enumerate(prompt[1:], start=1):
                value = logprob(position, token)
                entry = {str(token): {"logprob": value, "rank": 1 if value == 0 else 2}}
                if value < 0:
                    entry[str(UNK)] = {"logprob": 0.0, "rank": 1}
                positions.append(entry)
            answer["prompt_logprobs"] = positions
        return web.json_response(answer)

    async def tokenize_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if not self.tokenize:
            return web.json_response({"detail": "Not Found"}, status=404)
        if "messages" in body:
            tokens = self.chat_ids(body)
        else:
            tokens = self.text_ids(body["prompt"], body.get("add_special_tokens", True))
        return web.json_response({"count": len(tokens), "max_model_len": 512, "tokens": tokens})

    async def detokenize_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        return web.json_response({"prompt": TOK.decode(body["tokens"], skip_special_tokens=False)})

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = Fake()
    app = web.Application()
    app.router.add_post("/v1/completions", state.completions)
    app.router.add_post("/v1/chat/completions", state.chat)
    app.router.add_post("/tokenize", state.tokenize_endpoint)
    app.router.add_post("/detokenize", state.detokenize_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/v1"
    yield state
    await runner.cleanup()


QUESTION = "What is 1+2?"
ITEMS = [
    LoglikelihoodRequest(QUESTION, "3"),
    LoglikelihoodRequest(QUESTION, "12"),
    LoglikelihoodRequest("What is 5+7? ", "12"),  # trailing space moves to the answer
]


def expected_items() -> list[Loglikelihood]:
    out = []
    for item in ITEMS:
        context = item.context.rstrip()
        continuation = item.context[len(context) :] + item.continuation
        out.append(expected(ids(context + continuation), len(ids(context))))
    return out


def completions_model(fake: Fake, **args: Any) -> Any:
    return get_model("openai-api-completions/fake/tiny", base_url=fake.url, **args)


async def test_token_id_prompts_with_a_local_tokenizer_in_batches(fake: Fake) -> None:
    async with completions_model(fake, tokenizer=str(TINY), batch_size=2) as model:
        assert model.api.score_batch_size() == 2
        results = await model.score(ITEMS)
        # The server's usage (prompt tokens of both requests) is accounted.
        assert model.usage.input_tokens == sum(len(ids(i.context + i.continuation)) for i in ITEMS)
    assert results == expected_items()
    assert results[2].tokens == 3  # " 12"
    assert "/tokenize" not in fake.paths()  # the local tokenizer answered
    bodies = fake.bodies("/v1/completions")
    assert sorted(len(b["prompt"]) for b in bodies) == [1, 2]
    for body in bodies:
        assert {k: v for k, v in body.items() if k != "prompt"} == {
            "model": "tiny",
            "echo": True,
            "logprobs": 1,
            "max_tokens": 0,
            "temperature": 0.0,
        }
    prompts = [p for b in bodies for p in b["prompt"]]
    assert ids(QUESTION + "3") in prompts and ids("What is 5+7? 12") in prompts


async def test_the_servers_tokenize_endpoint_when_no_tokenizer_is_given(fake: Fake) -> None:
    async with completions_model(fake) as model:
        assert await model.loglikelihood([(i.context, i.continuation) for i in ITEMS]) == [
            (r.logprob, r.is_greedy) for r in expected_items()
        ]
    tokenized = [b["prompt"] for b in fake.bodies("/tokenize")]
    assert "" in tokenized  # the probe
    assert {QUESTION, QUESTION + "3", "What is 5+7?", "What is 5+7? 12"} <= set(tokenized)
    assert all(isinstance(b["prompt"][0], list) for b in fake.bodies("/v1/completions"))


@pytest.mark.parametrize("add_bos", [False, True])
async def test_text_prompts_and_text_offsets_without_any_tokenizer(
    fake: Fake, add_bos: bool
) -> None:
    fake.tokenize = False
    fake.add_bos = add_bos  # an echoed "<|bos|>" shifts every offset by 7 characters
    async with completions_model(fake) as model:
        results = await model.score(ITEMS)
    bos = [BOS] if add_bos else []
    want = []
    for item in ITEMS:
        context = item.context.rstrip()
        whole = bos + ids(item.context + item.continuation)
        want.append(expected(whole, len(bos) + len(ids(context))))
    assert results == want
    # One pair per request (batch_size 1); the batches run concurrently, in any order.
    assert sorted(b["prompt"] for b in fake.bodies("/v1/completions")) == [
        [QUESTION + "12"],
        [QUESTION + "3"],
        ["What is 5+7? 12"],
    ]


async def test_empty_context_starts_from_the_prefix_token(fake: Fake) -> None:
    async with completions_model(fake, tokenizer=str(TINY)) as model:
        [bos_scored] = await model.score([LoglikelihoodRequest("", "42")])
    async with completions_model(fake, tokenizer=str(TINY), prefix_token_id=2) as model:
        [eos_scored] = await model.score([LoglikelihoodRequest("", "42")])
    first, second = (b["prompt"][0] for b in fake.bodies("/v1/completions"))
    assert first == [BOS, *ids("42")] and second == [EOS, *ids("42")]
    assert bos_scored == expected(first, 1) and eos_scored == expected(second, 1)


async def test_long_prompts_keep_their_last_max_length_tokens(fake: Fake) -> None:
    async with completions_model(fake, tokenizer=str(TINY), max_length=6) as model:
        [result] = await model.score([LoglikelihoodRequest(QUESTION, "3")])
        with pytest.raises(ConfigError, match="does not fit in max_length 6"):
            await model.score([LoglikelihoodRequest("Q", "a long answer")])
    [prompt] = fake.bodies("/v1/completions")[0]["prompt"]
    assert prompt == ids(QUESTION + "3")[-6:]
    assert result == expected(prompt, 5)


async def test_rolling_windows_score_every_token_once(fake: Fake) -> None:
    text = "What is 12+34? 46"
    async with completions_model(fake, tokenizer=str(TINY), max_length=6) as model:
        [result] = await model.score_rolling([text])
        assert await model.loglikelihood_rolling([""]) == [0.0]
    windows = rolling_windows(ids(text), BOS, 5)
    prompts = [b["prompt"][0] for b in fake.bodies("/v1/completions")]
    assert prompts == [c + t for c, t in windows]
    assert max(len(p) for p in prompts) <= 6
    parts = [expected(c + t, len(c)) for c, t in windows]
    assert result.tokens == len(ids(text)) == sum(p.tokens for p in parts)
    assert result.logprob == pytest.approx(sum(p.logprob for p in parts))
    assert result.is_greedy == all(p.is_greedy for p in parts)


async def test_rolling_without_a_tokenizer_needs_the_servers_bos(fake: Fake) -> None:
    fake.tokenize = False
    fake.add_bos = True
    async with completions_model(fake) as model:
        [result] = await model.score_rolling([QUESTION])
    assert result == expected([BOS, *ids(QUESTION)], 1)
    fake.add_bos = False
    async with completions_model(fake) as model:
        with pytest.raises(ConfigError, match=r"adds no bos.*-M tokenizer="):
            await model.score_rolling([QUESTION])


async def test_a_server_without_echo_logprobs_is_a_clear_fatal_error(fake: Fake) -> None:
    fake.logprobs = False
    async with completions_model(fake, tokenizer=str(TINY)) as model:
        with pytest.raises(ModelError, match="returned no logprobs for an echoed prompt"):
            await model.score([ITEMS[0]])
    assert len(fake.bodies("/v1/completions")) == 1  # fatal: not retried


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"batch_size": 0}, "batch_size=0 must be a whole number >= 1"),
        ({"prefix_token_id": "bos"}, "prefix_token_id= must be an integer"),
        ({"tokenizer": 3}, "tokenizer"),
        ({"score_endpoint": "chat"}, "scores through its completions endpoint only"),
        ({"max_length": "long"}, "max_length= must be an integer"),
        ({"tokenizer": "/no/such/dir"}, "does not exist"),
    ],
)
def test_bad_scoring_args(fake: Fake, args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        completions_model(fake, **args)


async def test_scoring_args_are_not_sent_to_generate(fake: Fake) -> None:
    model = completions_model(fake, tokenizer=str(TINY), batch_size=4, min_p=0.1)
    body = model.api.body([], [], "auto", model.config)
    assert "tokenizer" not in body and "batch_size" not in body and body["min_p"] == 0.1
    await model.api.close()


async def test_server_tokenizer_fetches_each_text_once(fake: Fake) -> None:
    fake.add_bos = True  # the probe learns the server's bos from an empty prompt
    client = HttpClient(fake.url)
    tokenizer = ServerTokenizer(client, fake.url, "tiny")
    try:
        assert all(await asyncio.gather(*(tokenizer.available() for _ in range(5))))
        assert tokenizer.prefix_token_id == BOS
        await asyncio.gather(*(tokenizer.warm([QUESTION, "ab"]) for _ in range(5)))
        assert tokenizer.encode(QUESTION) == ids(QUESTION)
        assert tokenizer.decode(ids("ab")) == "ab"
        with pytest.raises(ModelError, match="not warmed"):
            tokenizer.encode("never asked")
        assert await tokenizer.detokenize([BOS, *ids("hi")]) == "<|bos|>hi"
        assert tokenizer.decode([BOS, *ids("hi")]) == "<|bos|>hi"
        lengths = await asyncio.gather(
            *(tokenizer.chat_length([{"role": "user", "content": "hi"}], False) for _ in range(3))
        )
        assert lengths == [4, 4, 4]  # <|user|> h i <|assistant|>
    finally:
        await client.close()
    # One probe, one request per distinct text, one per distinct conversation.
    assert fake.paths().count("/tokenize") == 1 + 2 + 1


async def test_server_tokenizer_on_a_server_without_one(fake: Fake) -> None:
    fake.tokenize = False
    client = HttpClient(fake.url)
    try:
        assert await ServerTokenizer(client, fake.url, "tiny").available() is False
    finally:
        await client.close()


# -- chat endpoints with vLLM's prompt_logprobs -----------------------------------


def expected_chat(context: str, continuation: str) -> Loglikelihood:
    prompt = [USER, *ids(context), ASSISTANT, *ids(continuation)]
    return expected(prompt, len(ids(context)) + 2)


async def test_chat_prompt_logprobs_with_the_servers_tokenize(fake: Fake) -> None:
    async with get_model("openai-api/fake/tiny", base_url=fake.url) as model:
        assert isinstance(model.api, PromptLogprobsAPI)
        results = await model.score(ITEMS[:2])
    assert results == [expected_chat(QUESTION, "3"), expected_chat(QUESTION, "12")]
    chat_bodies = fake.bodies("/v1/chat/completions")
    assert chat_bodies[0] == {
        "model": "tiny",
        "messages": [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "3"},
        ],
        "continue_final_message": True,
        "add_generation_prompt": False,
        "max_tokens": 1,
        "temperature": 0.0,
        "prompt_logprobs": 1,
    }
    # The context-only prompt (the user turn and the assistant's opening) is tokenized.
    chat_tokenize = [b for b in fake.bodies("/tokenize") if "messages" in b]
    assert chat_tokenize and all(b == chat_tokenize[0] for b in chat_tokenize)
    assert chat_tokenize[:1] == [
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": QUESTION}],
            "add_generation_prompt": True,
            "continue_final_message": False,
        }
    ]


async def test_vllm_server_mode_with_a_local_chat_template(fake: Fake) -> None:
    async with get_model("vllm/tiny", base_url=fake.url, tokenizer=str(TINY)) as model:
        results = await model.score([ITEMS[0]])
    assert results == [expected_chat(QUESTION, "3")]
    assert "/tokenize" not in fake.paths()


async def test_chat_scoring_errors(fake: Fake) -> None:
    fake.tokenize = False
    async with get_model("openai-api/fake/tiny", base_url=fake.url) as model:
        with pytest.raises(ConfigError, match=r"where the answer starts.*-M tokenizer="):
            await model.score([ITEMS[0]])
        with pytest.raises(UnsupportedFeature, match="score_endpoint=completions"):
            await model.score_rolling(["text"])
    fake.logprobs = False
    async with get_model("openai-api/fake/tiny", base_url=fake.url, tokenizer=str(TINY)) as m:
        with pytest.raises(ModelError, match="no prompt_logprobs"):
            await m.score([ITEMS[0]])


async def test_openai_chat_cannot_score(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    async with get_model("openai/gpt-4o-mini") as model:
        with pytest.raises(UnsupportedFeature, match="cannot score"):
            await model.loglikelihood([("a", "b")])


async def test_a_chat_provider_can_score_through_completions(fake: Fake) -> None:
    async with get_model(
        "vllm/tiny",
        base_url=fake.url,
        score_endpoint="completions",
        batch_size=3,
        prefix_token_id=1,
    ) as model:
        assert model.api.score_batch_size() == 3
        results = await model.score(ITEMS)
        [rolled] = await model.score_rolling(["ab"])
    assert results == expected_items()  # raw text, as the completions providers score
    assert "/v1/chat/completions" not in fake.paths()
    first, second = fake.bodies("/v1/completions")
    assert len(first["prompt"]) == 3 and first["echo"] is True
    assert "score_endpoint" not in first
    assert second["prompt"] == [[BOS, *ids("ab")]]
    assert rolled == expected([BOS, *ids("ab")], 1)
    with pytest.raises(ConfigError, match="must be chat or completions"):
        get_model("vllm/tiny", base_url=fake.url, score_endpoint="echo")


# -- the pure translation ---------------------------------------------------------


def test_text_span_counts_a_straddling_token_as_context() -> None:
    echo = {"tokens": ["Wh", "at ", "is", "?"], "text_offset": [0, 2, 5, 7]}
    # context "What" ends inside "at ": the continuation starts at "is".
    assert text_span(echo, "What", "What is?") == (2, 4)
    # A leading bos the prompt text lacks shifts every offset; the span is unchanged.
    bos = {"tokens": ["<s>", "Wh", "at ", "is", "?"], "text_offset": [0, 3, 5, 8, 10]}
    assert text_span(bos, "What", "What is?") == (3, 5)


def test_score_positions_needs_top_logprobs() -> None:
    echo = {"token_logprobs": [None, -0.5, -0.25], "top_logprobs": [None, {"a": -0.5}, None]}
    with pytest.raises(ModelError, match="no logprob and top_logprobs for prompt token 2"):
        score_positions(echo, 1, 3)
    assert score_positions(echo, 1, 2) == Loglikelihood(-0.5, True, 1)


def test_prompt_logprobs_per_choice_and_without_ranks() -> None:
    positions = [
        None,
        {"7": {"logprob": -0.25}},  # one entry: the prompt's token is the top-1
        {"8": {"logprob": -2.0, "rank": 4}, "9": {"logprob": -0.5, "rank": 1}},
    ]
    body = {"choices": [{"index": 0, "prompt_logprobs": positions}]}  # completions' place
    assert prompt_logprobs_score(body, 1, "http://x") == Loglikelihood(-2.25, False, 2)
    assert prompt_logprobs_score(body, 2, "http://x") == Loglikelihood(-2.0, False, 1)
    assert prompt_logprobs_score({"prompt_logprobs": positions[:2]}, 1, None).is_greedy
    # Two entries and no ranks: which one is the prompt's token is unknowable.
    unranked = [None, {"8": {"logprob": -2.0}, "9": {"logprob": -0.5}}]
    with pytest.raises(ModelError, match="without ranks"):
        prompt_logprobs_score({"prompt_logprobs": unranked}, 1, "http://x")
    with pytest.raises(ModelError, match="no prompt_logprobs"):
        prompt_logprobs_score({"choices": [{}]}, 1, "http://x")


async def test_a_chat_only_provider_says_why_it_cannot_score() -> None:
    model = get_model("openai/gpt-4o", api_key="sk-test", memoize=False)
    with pytest.raises(UnsupportedFeature, match=r"speaks chat completions, which return no "):
        await model.loglikelihood([("What is 2+2?", " 4")])
