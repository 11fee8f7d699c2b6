"""CachePolicy: expiry units, the --cache flag, and GenerateConfig.cache."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gauge.errors import ConfigError
from gauge.model.cache.policy import CachePolicy, as_policy, expiry_seconds, parse_cache_flag
from gauge.model.config import PIPELINE_FIELDS, PROVIDER_FIELDS, GenerateConfig


@pytest.mark.parametrize(
    ("expiry", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1D", 86_400),
        ("1W", 604_800),
        ("1M", 30 * 86_400),
        ("1Y", 365 * 86_400),
        ("1.5h", 5400),
        (" 3D ", 3 * 86_400),
    ],
)
def test_expiry_units(expiry: str, seconds: int) -> None:
    assert expiry_seconds(expiry) == seconds
    assert CachePolicy(expiry=expiry).seconds == seconds


@pytest.mark.parametrize("bad", ["1d", "1w", "W", "1", "1 week", "-1D", "1X", ""])
def test_bad_expiry_is_one_line_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        expiry_seconds(bad)
    message = str(info.value)
    assert "\n" not in message
    assert "units: s m h D W M Y" in message


def test_policy_defaults_and_never_expiring() -> None:
    policy = CachePolicy()
    assert (policy.expiry, policy.per_epoch, policy.scopes) == ("1W", True, {})
    assert policy.seconds == 604_800
    assert CachePolicy(expiry=None).seconds is None


def test_policy_rejects_bad_expiry_and_unserialisable_scopes() -> None:
    with pytest.raises(ValidationError, match="not a number and a unit"):
        CachePolicy(expiry="7 days")
    with pytest.raises(ValidationError, match="JSON values"):
        CachePolicy(scopes={"x": object()})


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (None, None),
        ("off", None),
        ("OFF", None),
        ("false", None),
        ("", CachePolicy()),
        ("1D", CachePolicy(expiry="1D")),
        ("never", CachePolicy(expiry=None)),
    ],
)
def test_parse_cache_flag(flag: str | None, expected: CachePolicy | None) -> None:
    assert parse_cache_flag(flag) == expected


def test_parse_cache_flag_bad_unit() -> None:
    with pytest.raises(ConfigError, match="'2d' is not a number and a unit"):
        parse_cache_flag("2d")


def test_as_policy_accepts_every_form() -> None:
    policy = CachePolicy(expiry="1h", scopes={"role": "grader"})
    assert as_policy(True) == CachePolicy()
    assert as_policy(False) is None
    assert as_policy(None) is None
    assert as_policy(policy) is policy
    assert as_policy("1h") == CachePolicy(expiry="1h")
    assert as_policy({"expiry": "1h", "scopes": {"role": "grader"}}) == policy
    with pytest.raises(ConfigError, match="cache policy: expiry"):
        as_policy({"expiry": "1 hour"})
    with pytest.raises(ConfigError, match="got int"):
        as_policy(3)


def test_generate_config_cache_field() -> None:
    assert GenerateConfig(cache=True).cache is True
    assert GenerateConfig(cache="1D").cache == CachePolicy(expiry="1D")
    assert GenerateConfig(cache={"per_epoch": False}).cache == CachePolicy(per_epoch=False)
    assert GenerateConfig(cache="off").cache is None
    with pytest.raises(ValidationError, match="not a number and a unit"):
        GenerateConfig(cache="1d")
    # The cache is gauge's job for every provider, never a provider field.
    assert "cache" in PIPELINE_FIELDS
    assert "cache" not in PROVIDER_FIELDS


def test_config_layers_cache_like_any_field() -> None:
    base = GenerateConfig(cache="1D", temperature=0.5)
    assert base.merge(GenerateConfig(cache=False)).cache is False
    assert base.merge(GenerateConfig(temperature=0.1)).cache == CachePolicy(expiry="1D")
    # Round trip through JSON (how journals and config files carry it).
    again = GenerateConfig.model_validate_json(base.model_dump_json())
    assert again.cache == CachePolicy(expiry="1D")
