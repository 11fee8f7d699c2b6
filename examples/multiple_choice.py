"""A small multiple-choice task: lettered options, "ANSWER: X", scored by choice().

gauge eval examples/multiple_choice.py --model openai/gpt-4o-mini
"""

from pathlib import Path

from gauge import Task, task
from gauge.dataset import json_dataset
from gauge.scorer import choice
from gauge.solver import multiple_choice, system_message

DATA = Path(__file__).parent / "data" / "science_mc.jsonl"


@task
def science_mc(epochs: int = 1) -> Task:
    """Everyday science questions with four options each."""
    return Task(
        dataset=json_dataset(DATA),
        solver=[system_message("You are a careful science teacher."), multiple_choice()],
        scorer=choice(),
        epochs=epochs,
    )
