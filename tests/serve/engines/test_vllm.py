"""The vllm engine's translation, with a fake AsyncLLMEngine (no GPU or vllm needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import openai
import pytest

from gauge.errors import MissingExtra
from gauge.model.messages import ChatMessageUser
from gauge.serve.engines.base import Delta, EngineRequest, EngineResult, SamplingParams
from gauge.serve.engines.vllm import VLLMEngine
from gauge.serve.schemas import parse_completion


class FakeTokenizer:
    chat_template = "x"

    def apply_chat_template(self, turns: list[dict[str, str]], **kwargs: Any) -> str:
        gen = "<assistant>" if kwargs["add_generation_prompt"] else ""
        return "".join(f"<{t['role']}>{t['content']}" for t in turns) + gen

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"t{i}" for i in ids)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]


class FakeVLLM:
    """Yields cumulative RequestOutputs word by word, as vLLM does."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Any]] = []

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    async def generate(
        self, prompt: dict[str, Any], params: Any, request_id: str
    ) -> AsyncIterator[Any]:
        self.calls.append((prompt, params))
        words = ["alpha", " beta", " gamma"]
        for step in range(1, len(words) + 1):
            outputs = [
                SimpleNamespace(
                    index=i,
                    text="".join(words[:step]),
                    token_ids=list(range(step)),
                    finish_reason=("length" if step == len(words) else None),
                    logprobs=[
                        {t: SimpleNamespace(logprob=-0.5, rank=1, decoded_token=f"w{t}")}
                        for t in range(step)
                    ],
                )
                for i in range(params["n"])
            ]
            yield SimpleNamespace(outputs=outputs, prompt_token_ids=[1, 2, 3, 4])


def engine() -> tuple[VLLMEngine, FakeVLLM]:
    fake = FakeVLLM()
    return VLLMEngine("org/model", engine=fake, sampling_params=lambda **kw: kw), fake


async def test_generate_translates_params_and_output() -> None:
    e, fake = engine()
    await e.start()
    body = {
        "model": "org/model",
        "prompt": [5, 6],
        "n": 2,
        "logprobs": 1,
        "echo": False,
        "max_tokens": 3,
        "ignore_eos": True,
        "skip_special_tokens": False,
        "top_k": 7,
        "min_p": 0.1,
        "stop_token_ids": [9],
    }
    [request] = parse_completion(body, e.honours, e.name).requests
    result = await e.generate(request)
    prompt, params = fake.calls[-1]
    assert prompt == {"prompt_token_ids": [5, 6]}
    assert params["n"] == 2 and params["top_k"] == 7 and params["min_p"] == 0.1
    assert params["stop_token_ids"] == [9] and params["max_tokens"] == 3
    assert params["ignore_eos"] is True and params["skip_special_tokens"] is False
    assert params["temperature"] == 0.0  # unset is greedy, as in the transformers engine
    assert [c.text for c in result.choices] == ["alpha beta gamma"] * 2
    assert result.choices[0].finish_reason == "length"
    assert result.prompt_tokens == 4 and result.completion_tokens == 6
    assert result.choices[0].logprobs is not None
    assert [t.token for t in result.choices[0].logprobs] == ["w0", "w1", "w2"]


async def test_stream_sends_deltas_and_chat_goes_through_the_template() -> None:
    e, fake = engine()
    await e.start()
    request = EngineRequest(SamplingParams(), messages=[ChatMessageUser(content="hi")])
    items = [item async for item in e.stream(request)]
    # Templated, then tokenized without a second BOS (the template holds its own).
    ids = FakeTokenizer().encode("<user>hi<assistant>", add_special_tokens=False)
    assert fake.calls[-1][0] == {"prompt_token_ids": ids}
    texts = [getattr(i, "text", None) for i in items[:-1]]
    assert texts == ["alpha", " beta", " gamma"]
    last = items[-2]
    assert isinstance(last, Delta) and last.finish_reason == "length"
    assert isinstance(items[-1], EngineResult)


async def test_missing_vllm_is_one_line() -> None:
    pytest.importorskip("torch")
    e = VLLMEngine("org/model")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtra, match="pip install vllm"):
            await e.load()


def test_served_through_http(serve: Any) -> None:
    e, _ = engine()
    server = serve(e, model_name="org/model")
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="org/model",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"ignore_eos": True, "skip_special_tokens": False},
        )
        assert reply.choices[0].message.content == "alpha beta gamma"
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="org/model",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"use_beam_search": True},
            )
        assert info.value.response.json()["error"]["param"] == "use_beam_search"
