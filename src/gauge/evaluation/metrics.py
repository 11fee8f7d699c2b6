"""Metrics over samples (accuracy, mean, stderr) and epoch reducers (mean, mode, max, at_least_k).

Score values become numbers first: "C" (correct) 1, "I" (incorrect) 0,
"P" (partial) 0.5, booleans 1/0, numbers as they are. Each sample's epochs are
reduced to one number, then metrics run over the samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gauge.errors import ConfigError

CORRECT = "C"
INCORRECT = "I"
PARTIAL = "P"
NOANSWER = "N"

_LETTER_VALUES = {CORRECT: 1.0, INCORRECT: 0.0, PARTIAL: 0.5, NOANSWER: 0.0}


def value_to_float(value: object) -> float:
    """A score value as a number (see the module docstring)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value in _LETTER_VALUES:
            return _LETTER_VALUES[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"score value {value!r} is not a number or one of C, I, P, N")


@dataclass(frozen=True, slots=True)
class Metric:
    """A named function from per-sample values to one number."""

    name: str
    compute: Callable[[Sequence[float]], float]

    def __call__(self, values: Sequence[float]) -> float:
        return self.compute(values) if values else float("nan")


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _stderr(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    m = _mean(values)
    variance = math.fsum((v - m) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def accuracy() -> Metric:
    """Share of samples scored correct (mean of values in 0..1)."""
    return Metric("accuracy", _mean)


def mean() -> Metric:
    """Mean of the per-sample values."""
    return Metric("mean", _mean)


def stderr() -> Metric:
    """Standard error of the mean (sample standard deviation / sqrt(n))."""
    return Metric("stderr", _stderr)


@dataclass(frozen=True, slots=True)
class Reducer:
    """Combines one sample's epoch values into one."""

    name: str
    reduce: Callable[[Sequence[float]], float]

    def __call__(self, values: Sequence[float]) -> float:
        return self.reduce(values)


def _mode(values: Sequence[float]) -> float:
    counts = Counter(values)
    top = max(counts.values())
    # Ties go to the smallest value so the result does not depend on epoch order.
    return min(v for v, c in counts.items() if c == top)


def at_least_k(k: int) -> Reducer:
    """1 when at least `k` epochs scored >= 1 (fully correct), else 0."""
    if k < 1:
        raise ConfigError(f"at_least_k needs k >= 1, got {k}")
    return Reducer(f"at_least_{k}", lambda values: 1.0 if sum(v >= 1 for v in values) >= k else 0.0)


REDUCERS: dict[str, Reducer] = {
    "mean": Reducer("mean", _mean),
    "mode": Reducer("mode", _mode),
    "max": Reducer("max", max),
}


def reducer(spec: str | Reducer) -> Reducer:
    """A Reducer from a name (mean, mode, max, at_least_K) or a Reducer."""
    if isinstance(spec, Reducer):
        return spec
    if spec in REDUCERS:
        return REDUCERS[spec]
    if spec.startswith("at_least_") and spec[9:].isdigit():
        return at_least_k(int(spec[9:]))
    raise ConfigError(f"unknown epoch reducer {spec!r}; use mean, mode, max or at_least_K")
