"""The in-process vLLM provider, through its engine interface (no vLLM, no GPU here).

A fake engine stands in for AsyncLLMEngine: it records what it was asked and
streams RequestOutput-shaped objects; a fake `vllm` module stands in for the
package where engine start-up is tested.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import os
import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gauge.errors import ConfigError, MissingExtra
from gauge.model.config import GenerateConfig
from gauge.model.model import Model
from gauge.model.providers.vllm_engine import VLLMAPI, unavailable_reason
from gauge.model.providers.vllm_engine.sampling import engine_kwargs, sampling_kwargs

transformers = pytest.importorskip("transformers")


def char_tokenizer() -> Any:
    """A character-level HF tokenizer with a chat template (what get_tokenizer returns)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    special = ["<pad>", "<eos>", "<user>", "<assistant>"]
    chars = [chr(c) for c in range(32, 127)] + ["é"]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(special + chars)}, "<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        additional_special_tokens=special[2:],
    )
    tokenizer.chat_template = (
        "{%- for m in messages -%}<{{ m['role'] }}>{{ m['content'] }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}<assistant>{%- endif -%}"
    )
    return tokenizer


@dataclass
class FakeLogprob:
    logprob: float
    rank: int | None
    decoded_token: str | None


@dataclass
class FakeCompletion:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    logprobs: list[dict[int, FakeLogprob]] | None = None


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion]
    finished: bool


@dataclass
class FakeParams:
    kwargs: dict[str, Any]


def fake_params(**kwargs: Any) -> FakeParams:
    return FakeParams(kwargs)


@dataclass
class FakeEngine:
    """Echoes the reversed prompt text, streaming it in two partial outputs."""

    tokenizer: Any = field(default_factory=char_tokenizer)
    calls: list[tuple[dict[str, Any], FakeParams, str]] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    finish_reason: str = "stop"

    async def get_tokenizer(self) -> Any:
        return self.tokenizer

    async def generate(
        self, prompt: dict[str, Any], params: FakeParams, request_id: str
    ) -> AsyncIterator[FakeRequestOutput]:
        self.calls.append((prompt, params, request_id))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            ids = prompt["prompt_token_ids"]
            answer = [i for i in reversed(ids) if i >= 4][:3]
            text = self.tokenizer.decode(answer)
            n = params.kwargs["n"]
            k = params.kwargs.get("logprobs")
            await asyncio.sleep(0.01)
            yield FakeRequestOutput(ids, [FakeCompletion(0, text[:1], answer[:1], None)], False)
            outputs = []
            for index in range(n):
                logprobs = None
                if k is not None:
                    logprobs = [self._position(t, k) for t in answer]
                outputs.append(FakeCompletion(index, text, answer, self.finish_reason, logprobs))
            yield FakeRequestOutput(ids, outputs, True)
        finally:
            self.in_flight -= 1

    def _position(self, token: int, k: int) -> dict[int, FakeLogprob]:
        # Top-k are ids 10, 11, ...; the sampled token ranks 5th unless it is among them.
        entries = {10 + r: FakeLogprob(-0.1 * (r + 1), r + 1, None) for r in range(k)}
        entries.setdefault(token, FakeLogprob(-2.0, 5, None))
        return entries


def make_model(engine: FakeEngine, **model_args: Any) -> Model:
    return Model(VLLMAPI("org/model", engine=engine, sampling_params=fake_params, **model_args))


def test_sampling_params_mapping() -> None:
    config = GenerateConfig(
        max_tokens=64,
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        seed=3,
        stop_seqs=["\n\n", ""],
        num_choices=2,
        best_of=4,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        logit_bias={17: -100.0},
        top_logprobs=5,
    )
    assert sampling_kwargs(config) == {
        "n": 2,
        "best_of": 4,
        "temperature": 0.7,
        "max_tokens": 64,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 3,
        "stop": ["\n\n"],
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {17: -100.0},
        "logprobs": 5,
    }


def test_sampling_defaults_are_greedy_with_a_real_length() -> None:
    assert sampling_kwargs(GenerateConfig()) == {"n": 1, "temperature": 0.0, "max_tokens": 512}
    assert sampling_kwargs(GenerateConfig(logprobs=True))["logprobs"] == 0
    with pytest.raises(ConfigError, match="best_of=1 is less than num_choices=2"):
        sampling_kwargs(GenerateConfig(best_of=1, num_choices=2))


def test_engine_args_from_model_args() -> None:
    kwargs, devices = engine_kwargs("org/model", {"device": "0, 1,2,3", "max_model_len": 4096})
    assert kwargs == {"model": "org/model", "tensor_parallel_size": 4, "max_model_len": 4096}
    assert devices == "0,1,2,3"
    kwargs, devices = engine_kwargs("local", {"model_path": "/m", "tensor_parallel_size": "2"})
    assert kwargs == {"model": "/m", "tensor_parallel_size": 2} and devices is None
    kwargs, _ = engine_kwargs("m", {"device": 1, "tensor_parallel_size": 1})
    assert kwargs["tensor_parallel_size"] == 1  # an explicit size wins over the device count
    with pytest.raises(ConfigError, match="must list GPU indices"):
        engine_kwargs("m", {"device": "cuda:0"})
    with pytest.raises(ConfigError, match="vllm/local needs the model directory"):
        engine_kwargs("local", {})
    with pytest.raises(ConfigError, match="only for vllm/local"):
        engine_kwargs("m", {"model_path": "/m"})


async def test_generate_translates_prompt_params_and_output() -> None:
    engine = FakeEngine()
    model = make_model(engine)
    output = await model.generate(
        "abc", config=GenerateConfig(max_tokens=5, temperature=0.2, stop_seqs=["x"])
    )
    prompt, params, request_id = engine.calls[0]
    tok = engine.tokenizer
    assert prompt == {"prompt_token_ids": tok("<user>abc<assistant>")["input_ids"]}
    assert params.kwargs == {"n": 1, "temperature": 0.2, "max_tokens": 5, "stop": ["x"]}
    assert request_id.startswith("gauge-")
    assert output.completion == "cba"
    assert output.stop_reason == "stop"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens) == (5, 3)
    assert output.model == "org/model"
    assert model.name == "vllm/org/model"


async def test_length_finish_is_max_tokens_and_choices_are_kept() -> None:
    engine = FakeEngine(finish_reason="length")
    output = await make_model(engine).generate("hello", config=GenerateConfig(num_choices=3))
    assert [c.stop_reason for c in output.choices] == ["max_tokens"] * 3
    assert output.usage is not None and output.usage.output_tokens == 9


async def test_logprobs_carry_exact_token_strings_and_bytes() -> None:
    engine = FakeEngine()
    output = await make_model(engine).generate(
        "héllo", config=GenerateConfig(logprobs=True, top_logprobs=2)
    )
    tok = engine.tokenizer
    assert output.choices[0].logprobs is not None
    content = output.choices[0].logprobs.content
    assert [lp.token for lp in content] == ["o", "l", "l"]
    assert content[0].logprob == -2.0  # the sampled token's own entry
    top = content[0].top_logprobs
    assert top is not None
    assert [t.token for t in top] == tok.convert_ids_to_tokens([10, 11])
    assert [t.logprob for t in top] == [pytest.approx(-0.1), pytest.approx(-0.2)]
    assert all(t.bytes == list(t.token.encode()) for t in top)
    accented = await make_model(engine).generate("é", config=GenerateConfig(logprobs=True))
    assert accented.choices[0].logprobs is not None
    first = accented.choices[0].logprobs.content[0]
    assert (first.token, first.bytes, first.top_logprobs) == ("é", [0xC3, 0xA9], [])


async def test_concurrent_requests_reach_the_engine_together() -> None:
    engine = FakeEngine()
    model = make_model(engine)
    outputs = await asyncio.gather(*(model.generate(f"q{i}") for i in range(20)))
    assert [o.completion for o in outputs] == [f"q{i}"[::-1] for i in range(20)]
    assert engine.peak == 20  # vLLM does the batching; the provider never serialises


async def test_tools_are_refused_with_a_pointer_to_server_mode() -> None:
    from gauge.model.tools import ToolInfo

    model = make_model(FakeEngine())
    with pytest.raises(ConfigError, match="VLLM_BASE_URL"):
        await model.generate("hi", tools=[ToolInfo(name="f", description="d")])


def test_without_vllm_or_gpu_one_line_points_to_server_mode() -> None:
    reason = unavailable_reason()
    if reason is None:
        pytest.skip("vllm and a GPU are present")
    with pytest.raises(MissingExtra) as info:
        VLLMAPI("org/model")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"vllm/org/model runs vLLM in-process, but {reason}")
    assert "VLLM_BASE_URL" in message


def test_engine_start_sets_devices_and_tensor_parallel_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[dict[str, Any]] = []

    class AsyncEngineArgs:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    class AsyncLLMEngine:
        @classmethod
        def from_engine_args(cls, args: AsyncEngineArgs) -> str:
            started.append({"env": os.environ.get("CUDA_VISIBLE_DEVICES"), **args.kwargs})
            return "engine"

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.AsyncEngineArgs = AsyncEngineArgs  # type: ignore[attr-defined]
    fake.AsyncLLMEngine = AsyncLLMEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    api = VLLMAPI("org/model", engine=FakeEngine(), device="2,3", dtype="bfloat16")
    assert api._start_engine() == "engine"
    assert started == [
        {"env": "2,3", "model": "org/model", "tensor_parallel_size": 2, "dtype": "bfloat16"}
    ]


async def test_in_process_engine_says_how_to_score_loglikelihoods() -> None:
    from gauge.errors import UnsupportedFeature

    model = make_model(FakeEngine())
    with pytest.raises(UnsupportedFeature, match=r"in process does not score loglikelihoods; "):
        await model.loglikelihood([("2+2=", "4")])
