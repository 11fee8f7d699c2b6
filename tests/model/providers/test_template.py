"""TemplateAPI: batching, payloads, parsing, errors and secrets, against a fake HTTP API."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from gauge.errors import ConfigError, ModelError, UnsupportedFeature
from gauge.model import GenerateConfig, get_model, modelapi
from gauge.model.providers._http import HTTPStatusError
from gauge.model.providers.template import TemplateAPI
from gauge.model.providers.template.batcher import Batcher
from gauge.model.registry import unregister
from gauge.model.scoring import LoglikelihoodRequest


class CharTokenizer:
    """One token per character (its code point); 0 is the prefix token."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    @property
    def prefix_token_id(self) -> int | None:
        return 0


def token_logprob(token: int) -> float:
    """The fake server's logprob for a token: a fixed function, so sums are checkable."""
    return -0.001 * token


class EchoAPI(TemplateAPI):
    """Prompts in, reversed prompts out; scores per token (with ids) or per pair (text)."""

    message_format = "text"
    generate_path = "gen"
    loglikelihood_path = "score"

    def create_payload(
        self,
        messages: Any,
        *,
        generate: bool = True,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        pairs: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if generate:
            return {"prompts": messages, "gen": gen_kwargs, "seed": seed}
        return {"inputs": messages, "pairs": pairs}

    @staticmethod
    def parse_generations(outputs: Any) -> list[str]:
        return list(outputs["outputs"])

    def parse_logprobs(
        self,
        outputs: Any,
        tokens: list[list[int]] | None = None,
        ctxlens: list[int] | None = None,
    ) -> list[tuple[float, bool]]:
        if tokens is None or ctxlens is None:
            return [(score, True) for score in outputs["scores"]]
        return [
            (sum(lps[ctx:]), all(greedy[ctx:]))
            for lps, greedy, ctx in zip(
                outputs["token_logprobs"], outputs["greedy"], ctxlens, strict=True
            )
        ]


class ChatAPI(EchoAPI):
    """The same API fed OpenAI-style chat messages."""

    message_format = "chat"

    def create_payload(
        self,
        messages: Any,
        *,
        generate: bool = True,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return {"chat": messages, "gen": gen_kwargs}

    @staticmethod
    def parse_generations(outputs: Any) -> list[str]:
        return list(outputs["outputs"])


class LmEvalStyleAPI(TemplateAPI):
    """Written the lm-eval way: `_create_payload`, cached-property `api_key` and `header`."""

    message_format = "text"
    generate_path = "gen"

    @functools.cached_property
    def api_key(self) -> str:  # type: ignore[override]
        return "from-property"

    @functools.cached_property
    def header(self) -> dict[str, str]:  # type: ignore[override]
        return {"X-Token": self.api_key, "X-Given": str(self.__dict__.get("_given_api_key"))}

    def _create_payload(
        self,
        messages: Any,
        *,
        generate: bool = True,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return {"prompts": messages, "gen": gen_kwargs}

    @staticmethod
    def parse_generations(outputs: Any, **kwargs: Any) -> list[str]:
        return list(outputs["outputs"])


class GenerateOnlyAPI(LmEvalStyleAPI):
    """No parse_logprobs: scoring is unsupported."""


@dataclass
class FakeAPI:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    """Answers for the next calls, before any success: (status, body, headers)."""
    short: bool = False
    """Answer one generation too few."""
    in_flight: int = 0
    peak: int = 0
    hang_first: bool = False
    """Leave the first call unanswered until the test ends."""
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAPI]:
    state = FakeAPI(url="")

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        state.bodies.append(body)
        state.headers.append(dict(request.headers))
        state.in_flight += 1
        state.peak = max(state.peak, state.in_flight)
        try:
            if state.hang_first and len(state.bodies) == 1:
                await state.release.wait()
            else:
                await asyncio.sleep(0)
        finally:
            state.in_flight -= 1
        if state.failures:
            status, payload, headers = state.failures.pop(0)
            return web.json_response(payload, status=status, headers=headers)
        if request.path == "/v1/gen":
            chat = body.get("chat")
            batched = bool(chat) and isinstance(chat[0], list)
            prompts = body.get("prompts") or (chat if batched else [chat])
            outputs = [p[::-1] if isinstance(p, str) else repr(p) for p in prompts]
            if state.short:
                outputs = outputs[:-1]
            return web.json_response({"outputs": outputs})
        inputs = body["inputs"]
        if inputs and isinstance(inputs[0], list):
            return web.json_response(
                {
                    "token_logprobs": [[token_logprob(t) for t in ids] for ids in inputs],
                    "greedy": [[t % 2 == 0 for t in ids] for ids in inputs],
                }
            )
        return web.json_response({"scores": [-float(len(c)) for _, c in body["pairs"]]})

    app = web.Application()
    app.router.add_post("/v1/gen", handle)
    app.router.add_post("/v1/score", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/v1"
    yield state
    state.release.set()
    await runner.cleanup()


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    modelapi("tmpl")(EchoAPI)
    modelapi("tmpl-chat")(ChatAPI)
    modelapi("tmpl-lm")(LmEvalStyleAPI)
    modelapi("tmpl-gen")(GenerateOnlyAPI)
    yield
    for name in ("tmpl", "tmpl-chat", "tmpl-lm", "tmpl-gen"):
        unregister(name)


def no_sleep(waits: list[float]) -> Any:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return sleep


async def test_concurrent_requests_coalesce_into_batches_in_order(fake: FakeAPI) -> None:
    async with get_model("tmpl/echo", base_url=fake.url, batch_size=4) as model:
        prompts = [f"prompt {i}" for i in range(10)]
        outputs = await asyncio.gather(*(model.generate(p) for p in prompts))
    assert [o.completion for o in outputs] == [p[::-1] for p in prompts]
    assert [len(b["prompts"]) for b in fake.bodies] == [4, 4, 2]  # ceil(10 / 4) calls
    assert [p for b in fake.bodies for p in b["prompts"]] == prompts


async def test_gen_kwargs_follow_lm_eval_names(fake: FakeAPI) -> None:
    config = GenerateConfig(max_tokens=7, temperature=0.5, stop_seqs=["\n"], seed=3, top_p=0.9)
    async with get_model("tmpl/echo", base_url=fake.url) as model:
        await model.generate("hi", config=config)
        await model.generate("hi again")
    first, second = fake.bodies
    assert first["gen"] == {
        "until": ["\n"],
        "max_gen_toks": 7,
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.9,
    }
    assert first["seed"] == 3
    # lm-eval's defaults: greedy, max_gen_toks 256, no stop sequences.
    assert second["gen"] == {"until": [], "max_gen_toks": 256, "do_sample": False}
    assert second["seed"] is None


async def test_different_settings_are_never_batched_together(fake: FakeAPI) -> None:
    async with get_model("tmpl/echo", base_url=fake.url, batch_size=8) as model:
        await asyncio.gather(
            model.generate("a", config={"max_tokens": 5}),
            model.generate("b", config={"max_tokens": 9}),
            model.generate("c", config={"max_tokens": 5}),
        )
    batches = sorted((b["gen"]["max_gen_toks"], b["prompts"]) for b in fake.bodies)
    assert batches == [(5, ["a", "c"]), (9, ["b"])]


async def test_num_concurrent_bounds_calls_in_flight(fake: FakeAPI) -> None:
    async with get_model("tmpl/echo", base_url=fake.url, batch_size=3, num_concurrent=1) as model:
        assert model.api.max_connections() == 3  # requests admitted: 1 call x 3
        outputs = await asyncio.gather(*(model.generate(f"p{i}") for i in range(9)))
    assert [o.completion for o in outputs] == [f"p{i}"[::-1] for i in range(9)]
    assert fake.peak == 1
    assert sum(len(b["prompts"]) for b in fake.bodies) == 9
    assert all(len(b["prompts"]) <= 3 for b in fake.bodies)


async def test_max_gen_toks_model_arg_is_the_default(fake: FakeAPI) -> None:
    async with get_model("tmpl/echo", base_url=fake.url, max_gen_toks="12") as model:
        await model.generate("x")
        await model.generate("y", config={"max_tokens": 3})
    assert [b["gen"]["max_gen_toks"] for b in fake.bodies] == [12, 3]


async def test_rate_limit_fails_the_whole_batch_and_each_request_retries(fake: FakeAPI) -> None:
    fake.failures = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"})]
    waits: list[float] = []
    async with get_model("tmpl/echo", base_url=fake.url, batch_size=4) as model:
        model.sleep = no_sleep(waits)
        outputs = await asyncio.gather(*(model.generate(f"q{i}") for i in range(4)))
    assert [o.completion for o in outputs] == [f"q{i}"[::-1] for i in range(4)]
    assert len(waits) == 4  # every request of the failed call backed off on its own
    assert all(2 <= w <= 2.2 for w in waits)  # Retry-After honoured
    assert sum(len(b["prompts"]) for b in fake.bodies[1:]) == 4


async def test_server_errors_are_transient_and_client_errors_fatal(fake: FakeAPI) -> None:
    fake.failures = [(503, {"error": "busy"}, {})]
    waits: list[float] = []
    async with get_model("tmpl/echo", base_url=fake.url) as model:
        model.sleep = no_sleep(waits)
        assert (await model.generate("abc")).completion == "cba"
        assert len(waits) == 1
        fake.failures = [(400, {"error": {"message": "bad field 'prompts'"}}, {})]
        with pytest.raises(HTTPStatusError, match="bad field 'prompts'") as info:
            await model.generate("abc")
    assert info.value.status == 400
    assert len(waits) == 1  # no retry for a 400
    assert len(fake.bodies) == 3


async def test_parse_length_mismatch_is_fatal_and_names_the_method(fake: FakeAPI) -> None:
    fake.short = True
    async with get_model("tmpl/echo", base_url=fake.url, batch_size=2) as model:
        results = await asyncio.gather(
            model.generate("a"), model.generate("b"), return_exceptions=True
        )
    assert len(fake.bodies) == 1  # fatal: not retried
    for result in results:
        assert isinstance(result, ModelError)
        assert "EchoAPI.parse_generations returned 1 results for 2 requests" in str(result)


async def test_api_key_is_sent_as_bearer_and_never_shown(
    fake: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-template-SECRET-123"
    async with get_model("tmpl/echo", base_url=fake.url, api_key=secret) as model:
        await model.generate("hello")
        fake.failures = [(401, {"error": {"message": "invalid key"}}, {})]
        with pytest.raises(HTTPStatusError) as info:
            await model.generate("again")
        shown = " ".join([repr(model), repr(model.api), str(model.info()), repr(vars(model.api))])
    assert fake.headers[0]["Authorization"] == f"Bearer {secret}"
    assert secret not in shown
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in caplog.text  # nothing logged at any level carries it


async def test_lm_eval_style_subclass_properties_and_private_create_payload(
    fake: FakeAPI,
) -> None:
    async with get_model("tmpl-lm/x", base_url=fake.url, api_key="given") as model:
        output = await model.generate("abc")
        given = model.api.__dict__["_given_api_key"]
    assert output.completion == "cba"
    assert fake.headers[0]["X-Token"] == "from-property"
    assert given.get() == "given"  # the key given to the base class, kept aside
    assert fake.headers[0]["X-Given"] == "********"
    assert fake.bodies[0]["prompts"] == ["abc"]


async def test_extra_headers_and_body_reach_the_request(fake: FakeAPI) -> None:
    config = GenerateConfig(extra_headers={"X-Team": "evals"}, extra_body={"priority": 2})
    async with get_model("tmpl/echo", base_url=fake.url) as model:
        await model.generate("x", config=config)
    assert fake.headers[0]["X-Team"] == "evals"
    assert fake.bodies[0]["priority"] == 2


async def test_chat_format_sends_one_conversation_of_dicts(fake: FakeAPI) -> None:
    async with get_model("tmpl-chat/x", base_url=fake.url) as model:
        await model.generate("hi", config={"system_message": "be brief"})
    assert fake.bodies[0]["chat"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


async def test_chat_format_batches_a_list_of_conversations(fake: FakeAPI) -> None:
    async with get_model("tmpl-chat/x", base_url=fake.url, batch_size=2) as model:
        await asyncio.gather(model.generate("a"), model.generate("b"))
    assert fake.bodies[0]["chat"] == [
        [{"role": "user", "content": "a"}],
        [{"role": "user", "content": "b"}],
    ]


async def test_loglikelihood_with_a_tokenizer_sends_ids_and_ctxlens(fake: FakeAPI) -> None:
    tokenizer = CharTokenizer()
    async with get_model("tmpl/x", base_url=fake.url, tokenizer=tokenizer, batch_size=3) as model:
        results = await model.score(
            [
                LoglikelihoodRequest(c, x)
                for c, x in [("Q: 2+2= ", "4"), ("ab", "cd"), ("", "zz"), ("x", "y")]
            ]
        )
    # Trailing whitespace moves to the continuation; an empty context is the prefix token.
    assert [b["inputs"] for b in fake.bodies] == [
        [tokenizer.encode("Q: 2+2= 4"), tokenizer.encode("abcd"), [0, *tokenizer.encode("zz")]],
        [tokenizer.encode("xy")],
    ]
    assert fake.bodies[0]["pairs"] == [["Q: 2+2=", " 4"], ["ab", "cd"], ["", "zz"]]
    expected = [" 4", "cd", "zz", "y"]
    for result, continuation in zip(results, expected, strict=True):
        ids = tokenizer.encode(continuation)
        assert result.logprob == pytest.approx(sum(token_logprob(t) for t in ids))
        assert result.is_greedy == all(t % 2 == 0 for t in ids)
        assert result.tokens == len(ids)


async def test_loglikelihood_without_a_tokenizer_sends_text_and_pairs(fake: FakeAPI) -> None:
    async with get_model("tmpl/x", base_url=fake.url, batch_size=2) as model:
        results = await model.loglikelihood([("a ", "bc"), ("d", "efg"), ("h", "i")])
    assert results == [(-3.0, True), (-3.0, True), (-1.0, True)]
    assert [b["inputs"] for b in fake.bodies] == [["a bc", "defg"], ["hi"]]


async def test_rolling_covers_every_token_once(fake: FakeAPI) -> None:
    text = "the quick brown fox jumps over the lazy dog"
    async with get_model(
        "tmpl/x", base_url=fake.url, tokenizer=CharTokenizer(), max_length=9, batch_size=2
    ) as model:
        [result] = await model.score_rolling([text])
    ids = CharTokenizer().encode(text)
    assert result.tokens == len(ids)
    assert math.isclose(result.logprob, sum(token_logprob(t) for t in ids), abs_tol=1e-9)
    inputs = [i for b in fake.bodies for i in b["inputs"]]
    assert max(len(i) for i in inputs) == 9  # at most max_length tokens per input
    assert inputs[0][0] == 0  # the first window starts from the prefix token


async def test_rolling_without_a_tokenizer_says_what_to_pass(fake: FakeAPI) -> None:
    async with get_model("tmpl/x", base_url=fake.url) as model:
        with pytest.raises(UnsupportedFeature, match="-M tokenizer=PATH"):
            await model.loglikelihood_rolling(["some text"])


async def test_a_class_without_parse_logprobs_cannot_score(fake: FakeAPI) -> None:
    async with get_model("tmpl-gen/x", base_url=fake.url) as model:
        assert model.api.supports_loglikelihood is False
        with pytest.raises(UnsupportedFeature, match="tmpl-gen"):
            await model.loglikelihood([("a", "b")])


async def test_scoring_uses_the_cache(fake: FakeAPI) -> None:
    async with get_model("tmpl/x", base_url=fake.url, batch_size=4) as model:
        first = await model.loglikelihood([("a", "b"), ("c", "dd")], cache=True)
        second = await model.loglikelihood([("a", "b"), ("c", "dd")], cache=True)
    assert first == second == [(-1.0, True), (-2.0, True)]
    assert len(fake.bodies) == 1


async def test_generate_uses_the_cache(fake: FakeAPI) -> None:
    async with get_model("tmpl/x", base_url=fake.url) as model:
        first = await model.generate("same", cache=True)
        second = await model.generate("same", cache=True)
    assert first.completion == second.completion == "emas"
    assert len(fake.bodies) == 1


async def test_a_missing_base_url_is_one_line(fake: FakeAPI) -> None:
    async with get_model("tmpl/x") as model:
        with pytest.raises(ConfigError, match="TMPL_BASE_URL"):
            await model.generate("x")


def test_bad_model_args_are_one_line() -> None:
    with pytest.raises(ConfigError, match="provider 'tmpl' does not take model args colour"):
        get_model("tmpl/x", base_url="http://127.0.0.1:9", colour="red")
    with pytest.raises(ConfigError, match="batch_size"):
        get_model("tmpl/x", base_url="http://127.0.0.1:9", batch_size="many")
    with pytest.raises(ConfigError, match="max_length must be at least 2"):
        get_model("tmpl/x", base_url="http://127.0.0.1:9", max_length=1)
    with pytest.raises(ConfigError, match="-M max_length='long' must be a whole number"):
        get_model("tmpl/x", base_url="http://127.0.0.1:9", max_length="long")
    assert get_model("tmpl/x", max_length="16").api.max_length == 16  # type: ignore[attr-defined]


def test_a_class_without_create_payload_cannot_be_built() -> None:
    class Empty(TemplateAPI):
        pass

    with pytest.raises(TypeError, match="Empty must define create_payload"):
        Empty("x", base_url="http://127.0.0.1:9")


async def test_an_abandoned_call_frees_its_slot_for_the_retry(fake: FakeAPI) -> None:
    # One call slot; the first call hangs. Its caller's attempt times out, which must
    # cancel the call and free the slot, or the retry would wait behind it forever.
    fake.hang_first = True
    waits: list[float] = []
    async with get_model("tmpl/x", base_url=fake.url, num_concurrent=1, max_retries=1) as model:
        model.sleep = no_sleep(waits)
        output = await model.generate("abc", config={"attempt_timeout": 1.0})
    assert output.completion == "cba"
    assert len(waits) == 1
    assert len(fake.bodies) == 2


async def test_batcher_keeps_groups_apart_and_skips_cancelled_requests() -> None:
    sent: list[tuple[str, list[int]]] = []
    gate = asyncio.Event()

    async def send(group: Any, items: list[int]) -> list[int]:
        sent.append((group, items))
        await gate.wait()
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(send, "test")
    first = asyncio.ensure_future(batcher.submit(0, "a", 3, 1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first call is out, holding the only slot
    waiting = [
        asyncio.ensure_future(batcher.submit(i, group, 3, 1))
        for i, group in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "a")]
    ]
    await asyncio.sleep(0)
    waiting[2].cancel()  # item 3 gives up before it is sent
    gate.set()
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert results[0] == 0
    assert results[1:3] == [10, 20]
    assert isinstance(results[3], asyncio.CancelledError)
    assert results[4:] == [40, 50]
    # Group a's next batch takes 1, 4, 5 (3 was cancelled); b waits its turn, in order.
    assert sent == [("a", [0]), ("a", [1, 4, 5]), ("b", [2])]


async def test_batcher_fails_each_caller_with_its_own_copy_of_the_error() -> None:
    async def send(group: Any, items: list[int]) -> list[int]:
        raise HTTPStatusError(503, "busy", {"error": "busy"}, {"Retry-After": "1"})

    batcher: Batcher[int, int] = Batcher(send, "test")
    errors = await asyncio.gather(
        *(batcher.submit(i, "g", 4, 1) for i in range(3)), return_exceptions=True
    )
    assert len({id(e) for e in errors}) == 3  # one copy each: histories attach per caller
    for error in errors:
        assert isinstance(error, HTTPStatusError)
        assert (error.status, error.retry_after, str(error)) == (503, 1.0, "HTTP 503: busy")
    assert list(batcher.batch_sizes) == [3]
