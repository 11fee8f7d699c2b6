"""Solvers for evals: `from gauge.solver import generate, system_message, ...`."""

from gauge.evaluation.loglikelihood import multiple_choice_loglikelihood
from gauge.evaluation.solver import (
    Generate,
    Solver,
    chain,
    chain_of_thought,
    generate,
    multiple_choice,
    prompt_template,
    self_critique,
    system_message,
    user_message,
)
from gauge.evaluation.state import TaskState

__all__ = [
    "Generate",
    "Solver",
    "TaskState",
    "chain",
    "chain_of_thought",
    "generate",
    "multiple_choice",
    "multiple_choice_loglikelihood",
    "prompt_template",
    "self_critique",
    "system_message",
    "user_message",
]
