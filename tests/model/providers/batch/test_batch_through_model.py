"""`generate` with `batch` on: every batch translator through the pipeline's batch stage.

The stage splits the requests into jobs of `size`, the translator sends them
to the provider's fake, and every answer comes back to its caller, marked with
its job; each request is submitted exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gauge import get_model
from gauge.model.config import GenerateConfig
from gauge.testing.batch_fakes._base import BatchFake
from gauge.testing.batch_fakes.anthropic import FakeAnthropicBatches
from gauge.testing.batch_fakes.gemini import FakeGeminiBatches
from gauge.testing.batch_fakes.mistral import FakeMistralBatches
from gauge.testing.batch_fakes.openai_style import FakeGroqBatches, FakeTogetherBatches

CASES: dict[str, tuple[Callable[[], BatchFake], str, str]] = {
    "anthropic": (FakeAnthropicBatches, "anthropic/claude-test", ""),
    "google": (FakeGeminiBatches, "google/gemini-test", ""),
    "mistral": (FakeMistralBatches, "mistral/mistral-test", "/v1"),
    "together": (FakeTogetherBatches, "together/llama-test", "/v1"),
    "groq": (FakeGroqBatches, "groq/llama-test", "/openai/v1"),
}


@pytest.mark.parametrize("provider", list(CASES))
async def test_five_requests_in_jobs_of_three_come_back_to_their_callers(provider: str) -> None:
    make, spec, suffix = CASES[provider]
    async with make() as fake:
        key = getattr(fake, "api_key")  # noqa: B009 (each fake has its own key attribute)
        async with get_model(spec, base_url=fake.url + suffix, api_key=key, memoize=False) as m:
            config = GenerateConfig(
                batch={"size": 3, "send_delay": 0.05, "tick": 0.01, "max_tick": 0.02}
            )
            outputs = await asyncio.gather(*[m.generate(f"q{i}", config=config) for i in range(5)])
    assert [o.completion for o in outputs] == [f"echo: q{i}" for i in range(5)]
    assert len(fake.jobs) == 2
    jobs = {o.metadata["batch"] for o in outputs if o.metadata}
    assert len(jobs) == 2
    assert len(fake.submissions) == 5
    assert set(fake.submissions.values()) == {1}
