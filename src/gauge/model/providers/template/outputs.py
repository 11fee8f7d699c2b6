"""What a template provider's parsers receive and return, in lm-eval's shapes.

Responses   the call's parsed JSON bodies as a list (`for output in outputs`);
            `outputs["key"]` still reads the one body, for parsers written that way
KeyText     the API key as text (`f"Bearer {self.api_key}"` sends it) whose repr is stars
as_loglikelihood   one parse_logprobs item -> Loglikelihood: a (logprob, is_greedy)
            pair, or a list of token logprobs (the continuation's are summed)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsIndex, overload

from gauge.errors import ModelError
from gauge.model.scoring import Loglikelihood


class KeyText(str):
    """The key as a plain string for headers; `repr` shows stars, so logs do not hold it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'********'" if self else "''"


class Responses(list[Any]):
    """The parsed response bodies of one call, as lm-eval's parsers take them: a list.

    lm-eval's own parsers wrap a lone body in a list (`if not isinstance(outputs,
    list)`), and its documented example iterates `for output in outputs`; both work.
    A parser written against the body itself (`outputs["results"]`,
    `outputs.get(...)`, `"x" in outputs`) reads the call's one body.
    """

    @overload
    def __getitem__(self, key: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> list[Any]: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._body()[key]
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return key in self._body()
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """`body.get(key, default)` on the call's one body."""
        return self._body().get(key, default)

    def keys(self) -> Any:
        """The keys of the call's one body."""
        return self._body().keys()

    def values(self) -> Any:
        """The values of the call's one body."""
        return self._body().values()

    def items(self) -> Any:
        """The items of the call's one body."""
        return self._body().items()

    def _body(self) -> dict[str, Any]:
        body = super().__getitem__(0) if len(self) == 1 else None
        if not isinstance(body, dict):
            raise TypeError("outputs is a list of response bodies; iterate over it")
        return body


def as_responses(body: Any) -> Any:
    """What the parsers get for one call's body: a dict body in a `Responses` list."""
    return Responses([body]) if isinstance(body, dict) else body


def as_loglikelihood(
    owner: str, score: Any, inputs: Sequence[Any] | None, ctxlen: int | None
) -> Loglikelihood:
    """One parse_logprobs item as a Loglikelihood.

    A `(logprob, is_greedy)` pair is lm-eval's contract. A list of token logprobs
    (the shape of lm-eval's documented example) is summed over the continuation:
    the entries past `ctxlen` when there is one per input token, else all of them
    when there is one per continuation token; is_greedy is then False (unknown).
    """
    if isinstance(score, Loglikelihood):
        return score
    counted = len(inputs) - ctxlen if inputs is not None and ctxlen is not None else 0
    if isinstance(score, Sequence) and not isinstance(score, str):
        if len(score) == 2 and _is_bool(score[1]) and _is_number(score[0]):
            return Loglikelihood(float(score[0]), bool(score[1]), counted)
        if all(_is_number(x) or x is None for x in score):
            return _token_logprobs(owner, list(score), inputs, ctxlen)
    raise ModelError(
        f"{owner}.parse_logprobs must return (logprob, is_greedy) pairs or lists of token "
        f"logprobs, got {score!r}"
    )


def _token_logprobs(
    owner: str, values: list[Any], inputs: Sequence[Any] | None, ctxlen: int | None
) -> Loglikelihood:
    if inputs is None or ctxlen is None:
        raise ModelError(
            f"{owner}.parse_logprobs returned token logprobs, but without a tokenizer gauge "
            "cannot tell which belong to the continuation: pass -M tokenizer=PATH, or "
            "return (logprob, is_greedy) pairs"
        )
    size = len(inputs) - ctxlen
    if len(values) == len(inputs):
        values = values[ctxlen:]  # one per input token (an echoed prompt)
    elif len(values) != size:
        raise ModelError(
            f"{owner}.parse_logprobs returned {len(values)} token logprobs for an input of "
            f"{len(inputs)} tokens ({size} in the continuation); return one per input "
            "token, one per continuation token, or (logprob, is_greedy) pairs"
        )
    return Loglikelihood(sum(float(x) for x in values if x is not None), False, size)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or (
        type(value).__name__ in ("float32", "float64", "int64")
    )
