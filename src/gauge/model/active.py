"""The model being evaluated, for code that runs inside an eval.

The eval runner sets `active_model` while a task runs on a model; `get_model()`
with no name returns it (as Inspect AI's does), so a solver, scorer or tool can
reach the evaluated model without being handed it. Outside an eval it is None.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gauge.model.model import Model

active_model: ContextVar[Model | None] = ContextVar("gauge_active_model", default=None)
"""The Model a running eval is evaluating in this context, else None."""


def evaluated_model(
    active: Model,
    config: Any,
    base_url: Any,
    api_key: str | None,
    model_args: dict[str, Any],
) -> Model:
    """`get_model()`'s answer inside an eval: the evaluated model, unchanged.

    Settings given with no name would be silently ignored, so they are refused.
    """
    if config is not None or base_url is not None or api_key is not None or model_args:
        from gauge.errors import ConfigError

        raise ConfigError(
            f"get_model() with no name returns the model being evaluated ({active.name}) "
            "as it is; name a model to build another one, or pass config= to generate()"
        )
    return active
