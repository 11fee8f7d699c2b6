"""Assemble trusted pydantic objects without re-validating them.

Providers build outputs from values they produced or already checked, once per
request on the event loop. On pydantic 2.14, `model_construct` costs more than
validated construction for small models (3.7 us vs 1.6 us measured here) because
it looks up every field's default. `trusted` sets the four slots pydantic keeps
a model's state in, directly, when `values` names every field; otherwise it falls
back to `model_construct`, so a field added to a model later gets its default
instead of being lost. tests/model/test_build.py checks the result equals a
validated model, so a pydantic change that breaks this fails loudly.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_new = object.__new__
# The slot descriptors set state without the lookup `object.__setattr__` does.
_set_dict = vars(BaseModel)["__dict__"].__set__
_set_fields_set = vars(BaseModel)["__pydantic_fields_set__"].__set__
_set_extra = vars(BaseModel)["__pydantic_extra__"].__set__
_set_private = vars(BaseModel)["__pydantic_private__"].__set__
_fields: dict[type[BaseModel], frozenset[str]] = {}


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """`cls(**values)` without validation, for values known to be of the right types."""
    names = _fields.get(cls)
    if names is None:
        names = _fields[cls] = frozenset(cls.model_fields)
    if values.keys() != names:
        return cls.model_construct(**values)
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields_set(obj, set(values))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj
