import math

import pytest

from gauge.errors import ConfigError
from gauge.evaluation.metrics import accuracy, at_least_k, mean, reducer, stderr, value_to_float


def test_values_become_numbers() -> None:
    assert [value_to_float(v) for v in ("C", "I", "P", "N", True, False, 3, "0.25")] == [
        1.0,
        0.0,
        0.5,
        0.0,
        1.0,
        0.0,
        3.0,
        0.25,
    ]
    with pytest.raises(ConfigError, match="not a number"):
        value_to_float("maybe")


def test_accuracy_mean_stderr() -> None:
    values = [1.0, 0.0, 1.0, 1.0]
    assert accuracy()(values) == 0.75
    assert mean()([2.0, 4.0]) == 3.0
    # sample sd of [1,0,1,1] = 0.5; / sqrt(4) = 0.25
    assert stderr()(values) == pytest.approx(0.25)
    assert stderr()([1.0]) == 0.0
    assert math.isnan(accuracy()([]))


def test_reducers() -> None:
    assert reducer("mean")([1.0, 0.0, 1.0]) == pytest.approx(2 / 3)
    assert reducer("mode")([1.0, 0.0, 1.0]) == 1.0
    assert reducer("mode")([1.0, 0.0]) == 0.0  # tie -> smallest, independent of order
    assert reducer("max")([0.0, 0.5]) == 0.5
    assert reducer("at_least_2")([1.0, 0.0, 1.0]) == 1.0
    assert at_least_k(3)([1.0, 0.0, 1.0]) == 0.0
    with pytest.raises(ConfigError, match="unknown epoch reducer 'median'"):
        reducer("median")
