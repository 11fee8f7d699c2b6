"""With `batch` on, an eval keeps enough samples in flight to fill its jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import Task
from gauge.dataset import Sample
from gauge.evaluation.runner import eval_async
from gauge.evaluation.settings import resolve_settings, samples_in_flight
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.scorer import match
from gauge.testing.openai_batch_server import OpenAIBatchServer


def settings(**run: Any) -> Any:
    return resolve_settings(GenerateConfig(), GenerateConfig(), GenerateConfig(**run))


def test_batch_keeps_size_times_max_batches_in_flight_unless_max_samples_says() -> None:
    model = get_model("openai/gpt-4o-mini", api_key="sk-test", memoize=False)
    limit = model.api.max_connections_limit()
    assert samples_in_flight(model, settings()) == limit
    assert samples_in_flight(model, settings(max_connections=4)) == 4
    assert samples_in_flight(model, settings(batch=True)) == 100 * 100
    batch = {"size": 50, "max_batches": 3}
    assert samples_in_flight(model, settings(batch=batch, max_connections=4)) == 150
    assert samples_in_flight(model, settings(batch=batch), max_samples=7) == 7
    assert samples_in_flight(model, settings(batch=False, max_connections=4)) == 4


async def test_a_batch_eval_fills_its_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "cache"))
    task = Task([Sample(input=f"q{i}", target=f"q{i}", id=i) for i in range(60)], scorer=match())
    batch = {"size": 25, "send_delay": 0.5, "tick": 0.05, "max_tick": 0.1}
    async with OpenAIBatchServer() as server:
        model = get_model(
            "openai/gpt-4o-mini",
            base_url=server.url,
            api_key="sk-test",
            config={"max_connections": 4},
            memoize=False,
        )
        [result] = await eval_async(task, model, log_dir=tmp_path, display=False, batch=batch)
        await model.close()
    assert result.status == "success" and result.completed == 60
    sizes = sorted((len(job.lines) for job in server.jobs.values()), reverse=True)
    assert sizes == [25, 25, 10]  # not jobs of 4 (the connection limit)
    header = orjson.loads(Path(result.journal).read_bytes().splitlines()[0])
    assert header["eval"]["samples_in_flight"] == 25 * 100
