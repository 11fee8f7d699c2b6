"""The bundled gauge-tiny model through `get_model("hf/gauge-tiny")`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.providers.hf import HuggingFaceAPI
from gauge.model.providers.hf.loading import bundled_path

HELD_OUT = Path(__file__).resolve().parents[3] / "examples" / "data" / "arithmetic.jsonl"

pytestmark = pytest.mark.skipif(
    not (bundled_path() / "config.json").is_file() or not HELD_OUT.is_file(),
    reason="the bundled model or its held-out data is not built (scripts/train_tiny_model.py)",
)


def hf_api(model: Model) -> HuggingFaceAPI:
    """The model's provider, typed as the hf provider."""
    assert isinstance(model.api, HuggingFaceAPI)
    return model.api


def held_out(n: int) -> list[dict[str, str]]:
    lines = HELD_OUT.read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


async def test_answers_held_out_arithmetic() -> None:
    model = get_model("hf/gauge-tiny", device="cpu")
    rows = held_out(200)
    config = GenerateConfig(max_tokens=6)
    outputs = await asyncio.gather(*(model.generate(r["input"], config=config) for r in rows))
    correct = sum(o.completion.strip() == r["target"] for o, r in zip(outputs, rows, strict=True))
    assert correct / len(rows) >= 0.98, f"{correct}/{len(rows)} correct"
    # Concurrency 200 with max_connections 32: full batches, not one request at a time.
    sizes = list(hf_api(model).engine.batch_sizes)
    assert max(sizes) == 32 and len(sizes) <= 10
    first = outputs[0]
    assert first.stop_reason == "stop"
    assert first.usage is not None
    assert first.usage.output_tokens == len(rows[0]["target"]) + 1  # digits and EOS


async def test_batched_answers_equal_one_at_a_time() -> None:
    model = get_model("hf/gauge-tiny", device="cpu")
    rows = held_out(300)[200:216]
    config = GenerateConfig(max_tokens=6, logprobs=True)
    together = await asyncio.gather(*(model.generate(r["input"], config=config) for r in rows))
    for row, batched in zip(rows, together, strict=True):
        alone = await model.generate(row["input"], config=config)
        assert alone.completion == batched.completion
        assert alone.choices[0].logprobs is not None and batched.choices[0].logprobs is not None
        a = [lp.logprob for lp in alone.choices[0].logprobs.content]
        b = [lp.logprob for lp in batched.choices[0].logprobs.content]
        assert a == pytest.approx(b, abs=1e-4)  # padding does not change the numbers


async def test_default_name_needs_no_arguments() -> None:
    model = get_model("hf/gauge-tiny")
    output = await model.generate("What is 40+2?", config=GenerateConfig(max_tokens=4))
    assert output.completion == "42"
    assert model.info()["model_id"] == "gauge-tiny"
