"""A model-graded task: open answers judged against a reference fact by a grader model.

gauge eval examples/model_graded.py --model openai/gpt-4o-mini -T grader=openai/gpt-4o
"""

from pathlib import Path

from gauge import GenerateConfig, Task, task
from gauge.dataset import json_dataset
from gauge.scorer import model_graded_fact
from gauge.solver import chain_of_thought, generate

DATA = Path(__file__).parent / "data" / "facts.jsonl"


@task
def facts(grader: str | None = None) -> Task:
    """Short factual questions; `grader` (default: the evaluated model) grades each answer."""
    return Task(
        dataset=json_dataset(DATA),
        solver=[chain_of_thought(), generate()],
        scorer=model_graded_fact(model=grader, config=GenerateConfig(temperature=0)),
    )
