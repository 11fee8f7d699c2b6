"""ModelCall: the raw request and response of one provider call, as Inspect AI has it.

A provider's `generate` may return `(output, ModelCall)` (or `(exception, ModelCall)`
when the call failed) instead of a bare ModelOutput. The pipeline unwraps it in one
place (`unwrap`): the output carries the call as `output.call`; an exception is
raised with the call attached as `ex.model_call`. The call is never cached or
journalled: a raw request can hold credentials.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gauge.errors import ModelError
from gauge.model.output import ModelOutput


class ModelCall(BaseModel):
    """The request a provider sent and the response it got (for inspection only)."""

    request: dict[str, Any]
    response: dict[str, Any] | None = None
    time: float | None = None
    """Seconds the call took, when the provider measured it."""

    @classmethod
    def create(
        cls,
        request: Any,
        response: Any = None,
        time: float | None = None,
    ) -> ModelCall:
        """A ModelCall from request/response objects (pydantic models are dumped)."""
        return cls(request=_as_dict(request), response=_as_dict(response), time=time)


def _as_dict(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return {"value": value}


def unwrap(result: Any, provider: str) -> ModelOutput:
    """The ModelOutput of a provider's `generate` result; raises a returned exception."""
    if isinstance(result, ModelOutput):
        return result
    if not isinstance(result, tuple):
        raise ModelError(
            f"provider {provider!r} returned {type(result).__name__} from generate; "
            "return a ModelOutput, or (ModelOutput or exception, ModelCall)"
        )
    if len(result) != 2 or not isinstance(result[1], ModelCall):
        raise ModelError(
            f"provider {provider!r} returned a tuple that is not (ModelOutput, ModelCall); "
            "return a ModelOutput, or (ModelOutput or exception, ModelCall)"
        )
    output, call = result
    if isinstance(output, BaseException):
        output.model_call = call  # type: ignore[attr-defined]
        raise output
    if not isinstance(output, ModelOutput):
        raise ModelError(
            f"provider {provider!r} returned ({type(output).__name__}, ModelCall); "
            "the first item must be a ModelOutput or an exception"
        )
    output.call = call
    return output
