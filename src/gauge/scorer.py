"""Scorers and metrics for evals: `from gauge.scorer import match, includes, ...`."""

from gauge.evaluation.loglikelihood import acc, acc_norm
from gauge.evaluation.metrics import (
    CORRECT,
    INCORRECT,
    NOANSWER,
    PARTIAL,
    Metric,
    Reducer,
    accuracy,
    at_least_k,
    mean,
    stderr,
)
from gauge.evaluation.scorer import (
    Score,
    Scorer,
    choice,
    exact,
    f1,
    includes,
    match,
    model_graded_fact,
    model_graded_qa,
    pattern,
    scorer,
)

__all__ = [
    "CORRECT",
    "INCORRECT",
    "NOANSWER",
    "PARTIAL",
    "Metric",
    "Reducer",
    "Score",
    "Scorer",
    "acc",
    "acc_norm",
    "accuracy",
    "at_least_k",
    "choice",
    "exact",
    "f1",
    "includes",
    "match",
    "mean",
    "model_graded_fact",
    "model_graded_qa",
    "pattern",
    "scorer",
    "stderr",
]
