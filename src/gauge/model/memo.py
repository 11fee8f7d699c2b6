"""The memo behind `get_model`: identical calls return the same Model.

Its own module, below both `factory` (which fills it) and `model` (a Model used as
`async with` takes itself out), so neither has to import the other for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gauge.model.model import Model

MODELS: dict[tuple[Any, ...], Model] = {}
"""Memo key (see `factory.get_model`) -> the Model it built."""


def lookup(key: tuple[Any, ...]) -> Model | None:
    """The memoized Model for `key`, if any."""
    return MODELS.get(key)


def remember(key: tuple[Any, ...], model: Model) -> None:
    """Memoize `model` under `key`."""
    model._memo_key = key
    MODELS[key] = model


def forget(model: Model) -> None:
    """Remove `model` from the memo (a context-managed model is private)."""
    if model._memo_key is not None and MODELS.get(model._memo_key) is model:
        del MODELS[model._memo_key]
    model._memo_key = None


def clear() -> None:
    """Forget every memoized model (their clients are not closed)."""
    MODELS.clear()
