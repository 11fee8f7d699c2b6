"""Arithmetic: 1,000 held-out sums, scored by the number at the end of the answer.

gauge eval examples/arithmetic.py --model hf/gauge-tiny
gauge eval examples/arithmetic.py --model mock/echo --limit 20   # offline smoke run
"""

from pathlib import Path

from gauge import Task, task
from gauge.dataset import json_dataset
from gauge.scorer import match
from gauge.solver import generate

DATA = Path(__file__).parent / "data" / "arithmetic.jsonl"


@task
def arithmetic(limit: int | None = None, shuffle: bool = False, seed: int = 0) -> Task:
    """Answer "What is A+B?" with the sum."""
    return Task(
        dataset=json_dataset(DATA, shuffle=shuffle, seed=seed, limit=limit),
        solver=[generate()],
        scorer=match(location="end", numeric=True),
    )
