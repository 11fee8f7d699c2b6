"""Synthetic eval journals in the runner's line format, for viewer tests and benchmarks.

Runs of thousands of samples in milliseconds, with what a real run holds: chat
messages, outputs with choices, C/I scores with explanations, usage with cost
(or none: an unpriced model), model-call and sample times, retries, errors with
attempts, metadata. Deterministic for a given seed. A local model's run can
carry a first batch whose sample `time` includes a load (`load_seconds`), as
journals written before the runner loaded local models up front did.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

VOCABULARY = [f"{stem}{end}" for stem in ("tra", "mel", "sor", "qui", "bet", "lon", "ark", "vin")
              for end in ("a", "on", "ist", "ure", "ing", "el", "os", "ment")]  # fmt: skip
SUBJECTS = ["algebra", "biology", "chemistry", "geography", "history", "law", "physics"]


def sample_line(rng: random.Random, model: str, index: int, skill: float, priced: bool,
                load_seconds: float = 0.0, words: int = 0) -> dict[str, Any]:  # fmt: skip
    """One sample line; `skill`: the chance of a correct answer; `words`: a passage
    of that many random words before the question (a long prompt)."""
    same = random.Random(index)  # every model gets the same question for the same id
    a, b = same.randint(2, 99), same.randint(2, 99)
    passage = " ".join(same.choice(VOCABULARY) for _ in range(words))
    question = f"{passage}\n\nQuestion {index}: what is {a} + {b}? Answer with the number only."
    question = question.lstrip()
    target = str(a + b)
    metadata = {"subject": SUBJECTS[index % len(SUBJECTS)], "level": 1 + index % 5}
    record: dict[str, Any] = {
        "type": "sample", "id": index, "epoch": 1, "model": model,
        "input": [{"role": "system", "content": "You are a careful calculator."},
                  {"role": "user", "content": question}],
        "target": target, "metadata": metadata,
    }  # fmt: skip
    if rng.random() < 0.02:
        record.update(
            output=None, scores={}, usage=None, time=round(rng.uniform(1, 5), 6), retries=2,
            cache=None,
            error={"type": "RateLimitError", "message": f"429 from {model}: slow down",
                   "attempts": [{"attempt": n, "error": "RateLimitError: 429", "kind":
                                 "rate_limit", "seconds": 0.2, "wait": 1.0} for n in (1, 2, 3)]},
        )  # fmt: skip
        return record
    correct = rng.random() < skill
    answer = target if correct else str(a + b + rng.choice([-10, -1, 1, 10]))
    call = round(rng.lognormvariate(-1.2, 0.5), 6)
    tokens_in, tokens_out = 40 + len(question) // 4, rng.randint(1, 60)
    usage: dict[str, Any] = {
        "input_tokens": tokens_in, "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }  # fmt: skip
    if priced:
        usage["cost"] = round(tokens_in * 2e-6 + tokens_out * 8e-6, 8)
    completion = answer if rng.random() < 0.7 else f"Let me add {a} and {b}. The sum is {answer}."
    record.update(
        output={"completion": completion, "model_output": {
            "model": model, "usage": usage, "time": call,
            "choices": [{"message": {"role": "assistant", "content": completion,
                                     "source": "generate", "model": model},
                         "stop_reason": "stop"}]}},
        scores={"match": {"value": "C" if correct else "I", "answer": answer,
                          "explanation": f"expected {target}, read {answer}"}},
        usage=usage, time=round(call + load_seconds + rng.uniform(0, 0.01), 6),
        retries=1 if rng.random() < 0.05 else 0, cache=None, error=None,
    )  # fmt: skip
    return record


def write_run(folder: Path, model: str, samples: int, seed: int = 0, task: str = "arith",
              priced: bool = True, load_seconds: float = 0.0, batch: int = 8,
              words: int = 0) -> Path:  # fmt: skip
    """A finished run's journal in `folder`; the first `batch` samples carry `load_seconds`."""
    rng = random.Random(f"{seed}:{model}")
    skill = rng.uniform(0.3, 0.95)
    lines = [
        sample_line(rng, model, i, skill, priced, load_seconds if i < batch else 0.0, words)
        for i in range(samples)
    ]
    scored = [1.0 if line["scores"]["match"]["value"] == "C" else 0.0
              for line in lines if not line["error"]]  # fmt: skip
    mean = sum(scored) / max(len(scored), 1)
    stderr = (mean * (1 - mean) / max(len(scored) - 1, 1)) ** 0.5
    costs = [line["usage"].get("cost") for line in lines if line["usage"]]
    header = {
        "type": "header", "schema_version": 1, "created": "2026-12-06T09:00:00+00:00",
        "task": {"name": task, "samples": samples, "epochs": 1, "scorers": ["match"]},
        "model": {"name": model, "provider": model.split("/")[0]},
    }  # fmt: skip
    summary = {
        "type": "summary", "task": task, "model": model, "status": "success",
        "metrics": {"match": {"accuracy": mean, "stderr": stderr}}, "samples": samples,
        "completed": len(scored), "errors": samples - len(scored),
        "tokens": sum(line["usage"]["total_tokens"] for line in lines if line["usage"]),
        "seconds": round(sum(line["time"] for line in lines) / 8, 4),
        "cost": round(sum(c for c in costs if c is not None), 8) if priced else None,
    }  # fmt: skip
    path = folder / f"2026-12-06T09-00-00_{task}_{model.replace('/', '_')}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in [header, *lines, summary]))
    return path


def write_runs(
    folder: Path, models: Sequence[str], samples: int, seed: int = 0, words: int = 0
) -> list[Path]:
    """One run per model (every third unpriced); the folder is created if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_run(folder, model, samples, seed, priced=i % 3 != 2, words=words)
        for i, model in enumerate(models)
    ]
