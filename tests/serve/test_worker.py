"""The RunPod handler driven directly (both input forms), with the mock and tiny engines."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from gauge.serve.engines.mock import MockEngine
from gauge.serve.settings import Settings
from gauge.serve.worker import Worker, batch_sizes

WORDS = " ".join(f"w{i}" for i in range(100))


def worker(**settings: Any) -> Worker:
    settings.setdefault("disable_log_requests", True)
    return Worker(
        MockEngine("mock-model"), Settings(engine="mock", model_name="mock-model", **settings)
    )


async def outputs(w: Worker, data: Any) -> list[Any]:
    return [out async for out in w.handler({"id": "job-1", "input": data})]


def test_growth_schedule() -> None:
    assert list(itertools.islice(batch_sizes(1, 50, 3), 7)) == [1, 3, 9, 27, 50, 50, 50]
    assert list(itertools.islice(batch_sizes(2, 10, 2), 5)) == [2, 4, 8, 10, 10]
    assert list(itertools.islice(batch_sizes(4, 4, 1), 3)) == [4, 4, 4]


async def test_standard_form_stream_grouped_by_growth_schedule() -> None:
    outs = await outputs(
        worker(),
        {"prompt": WORDS, "sampling_params": {"max_tokens": 100}, "stream": True},
    )
    sizes = [len(o["choices"][0]["tokens"]) for o in outs]
    assert sizes == [1, 3, 9, 27, 50, 10]
    tokens = [t for o in outs for t in o["choices"][0]["tokens"]]
    assert "".join(tokens) == WORDS
    assert outs[-1]["usage"] == {"input": 100, "output": 100}
    assert all("usage" not in o for o in outs[:-1])


async def test_standard_form_custom_schedule_and_messages() -> None:
    outs = await outputs(
        worker(),
        {
            "messages": [{"role": "user", "content": "a b c d e f g"}],
            "stream": True,
            "min_batch_size": 2,
            "max_batch_size": 4,
            "batch_size_growth_factor": 2,
        },
    )
    assert [len(o["choices"][0]["tokens"]) for o in outs] == [2, 4, 1]
    single = await outputs(worker(), {"prompt": "x y", "sampling_params": {"n": 2}})
    assert single == [
        {"choices": [{"tokens": ["x y"]}, {"tokens": ["x y"]}], "usage": {"input": 2, "output": 4}}
    ]


async def test_openai_route_form() -> None:
    w = worker()
    [reply] = await outputs(
        w,
        {
            "openai_route": "/v1/chat/completions",
            "openai_input": {
                "model": "mock-model",
                "messages": [{"role": "user", "content": "hi"}],
            },
        },
    )
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == "hi"
    [models] = await outputs(w, {"openai_route": "/v1/models"})
    assert models["data"][0]["id"] == "mock-model"


async def test_openai_stream_raw_and_parsed() -> None:
    body = {
        "openai_route": "/v1/completions",
        "openai_input": {"model": "mock-model", "prompt": WORDS, "stream": True},
    }
    raw = await outputs(worker(), body)
    assert all(isinstance(o, str) for o in raw)
    text = "".join(raw)
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert [len(o.strip().split("\n\n")) for o in raw][:3] == [1, 3, 9]
    parsed = await outputs(worker(raw_openai_output=False), body)
    chunks = [c for group in parsed for c in group]
    assert "".join(c["choices"][0]["text"] for c in chunks) == " ".join(WORDS.split()[:16])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("data", "status", "param"),
    [
        (
            {"openai_route": "/v1/chat/completions", "openai_input": {"model": "mock-model"}},
            400,
            "messages",
        ),
        (
            {
                "openai_route": "/v1/chat/completions",
                "openai_input": {"model": "other", "messages": [{"role": "user", "content": "x"}]},
            },
            404,
            "model",
        ),
        ({"prompt": "x", "sampling_params": {"top_k": 3}}, 400, "top_k"),
        ({"prompt": "x", "stream": True, "min_batch_size": 0}, 400, "min_batch_size"),
        ({"prompt": "x", "bogus": 1}, 400, "bogus"),
        ({}, 400, "prompt"),
    ],
)
async def test_errors_keep_status_and_openai_body(data: Any, status: int, param: str) -> None:
    [out] = await outputs(worker(), data)
    assert out["status"] == status
    assert out["error"]["param"] == param
    assert set(out["error"]) == {"message", "type", "param", "code"}
    orjson.dumps(out)  # JSON-serialisable, as RunPod needs


async def test_bundled_model_through_the_worker() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from gauge.serve.engines.transformers import TransformersEngine

    settings = Settings(disable_log_requests=True)
    w = Worker(TransformersEngine.from_settings(settings), settings)
    [out] = await outputs(
        w,
        {
            "prompt": "What is 20+22?",
            "apply_chat_template": True,
            "sampling_params": {"max_tokens": 5},
        },
    )
    assert out["choices"][0]["tokens"] == ["42"]
    await w.server.engine.close()


def test_runs_under_the_runpod_sdk_local_test_mode(tmp_path: Any) -> None:
    pytest.importorskip("runpod")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update({"ENGINE": "mock", "MODEL_NAME": "mock-model", "DISABLE_LOG_STATS": "1"})
    job = {"input": {"prompt": "a b c d e", "stream": True}}
    proc = subprocess.run(
        [sys.executable, "-m", "gauge.serve.worker", "--test_input", orjson.dumps(job).decode()],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    logged = proc.stdout + proc.stderr
    assert (
        "{'choices': [{'tokens': ['a']}]}, {'choices': [{'tokens': [' b', ' c', ' d']}]}" in logged
    )
