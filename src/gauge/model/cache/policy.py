"""CachePolicy: whether and how long a response is reused, and what keys it.

Kept free of heavy imports: `GenerateConfig` validates its `cache` field with
this module, and `import gauge` must stay fast.
"""

from __future__ import annotations

import contextvars
import functools
import re
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gauge.errors import ConfigError

UNITS: dict[str, int] = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "D": 86_400,
    "W": 7 * 86_400,
    "M": 30 * 86_400,
    "Y": 365 * 86_400,
}
"""Expiry units; M is 30 days and Y 365 days."""

DEFAULT_EXPIRY = "1W"

cache_epoch: contextvars.ContextVar[int] = contextvars.ContextVar("gauge_cache_epoch", default=0)
"""The eval epoch of the current sample; the eval runner sets it, per_epoch keys use it."""

_EXPIRY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhDWMY])\s*")
_OFF = frozenset({"off", "false", "no", "none", "0"})


class CachePolicy(BaseModel):
    """How the response cache treats a request.

    `expiry`: how old a stored response may be to be reused, as a number and a
    unit (s m h D W M Y, e.g. "1W", "12h"); None never expires. `per_epoch`:
    keep a separate entry per eval epoch. `scopes`: extra values hashed into
    the key, to keep otherwise identical requests apart (e.g. {"role": "grader"}).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    expiry: str | None = DEFAULT_EXPIRY
    per_epoch: bool = True
    scopes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expiry")
    @classmethod
    def _check_expiry(cls, value: str | None) -> str | None:
        if value is not None:
            expiry_seconds(value)
        return value

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            orjson.dumps(value)
        except TypeError as ex:
            raise ValueError(
                f"cache scopes must be JSON values (str, number, bool): {ex}"
            ) from None
        return value

    @property
    def seconds(self) -> float | None:
        """The expiry in seconds, or None for entries that never expire."""
        return None if self.expiry is None else expiry_seconds(self.expiry)


@functools.lru_cache(maxsize=64)
def expiry_seconds(expiry: str) -> float:
    """Seconds in an expiry such as "1W" or "90m"; ConfigError on a bad unit."""
    match = _EXPIRY.fullmatch(expiry)
    if match is None:
        raise ConfigError(
            f"cache expiry {expiry!r} is not a number and a unit; "
            f"use e.g. 1W or 12h (units: {' '.join(UNITS)})"
        )
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_cache_flag(value: str | None) -> CachePolicy | None:
    """The policy for a `--cache[=DURATION]` flag.

    None (flag absent) and "off" give None (no caching); "" (bare `--cache`)
    gives the default policy; "1W", "12h", "never" set the expiry.
    """
    if value is None:
        return None
    text = value.strip()
    if text.lower() in _OFF:
        return None
    if not text:
        return CachePolicy()
    if text.lower() == "never":
        return CachePolicy(expiry=None)
    expiry_seconds(text)
    return CachePolicy(expiry=text)


def as_policy(value: object) -> CachePolicy | None:
    """The policy for a `cache=` value: True, False/None, an expiry string, a dict or a policy."""
    if value is None or value is False:
        return None
    if isinstance(value, CachePolicy):
        return value
    if value is True:
        return _DEFAULT
    if isinstance(value, str):
        return parse_cache_flag(value)
    if isinstance(value, dict):
        try:
            return CachePolicy(**value)
        except ValueError as ex:
            from gauge.errors import one_line

            raise ConfigError(f"cache policy: {one_line(ex)}") from None
    raise ConfigError(
        f"cache= takes True, False, an expiry such as '1W', or a CachePolicy; "
        f"got {type(value).__name__}"
    )


_DEFAULT = CachePolicy()


def config_value(value: object) -> object:
    """Validate `GenerateConfig.cache`: strings and dicts become a CachePolicy (or None)."""
    if isinstance(value, str):
        return parse_cache_flag(value)
    return value
