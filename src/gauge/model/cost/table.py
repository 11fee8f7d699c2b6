"""The price table: the shipped snapshot (prices.json) and the user's overrides.

    snapshot()           the dated snapshot shipped with gauge, read once
    load_overrides(path) a --model-cost-config file (YAML or JSON), checked field by field;
                         its prices win over the snapshot from then on in this process
    find_price(p, m)     the Price of model `m` of provider `p`, or None (unknown)

Lookup tries the override file (by `provider/model`), then the snapshot: the
name as given, without a `models/` prefix, then without a date suffix
(`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`, `...@20250514`), each also
through the provider's aliases. Azure OpenAI deployments are looked up under
`azure/<deployment>`; a deployment named otherwise than its model is priced by
the override file (`same_as: openai/gpt-4o`).
"""

from __future__ import annotations

import functools
import json
import re
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError
from gauge.model.cost.price import Price, Rates, Tier

ENV = "GAUGE_MODEL_COST_CONFIG"
_RATE_FIELDS = ("input", "output", "cached_input", "cache_write", "reasoning")
_MODEL_FIELDS = frozenset({*_RATE_FIELDS, "tiers", "batch", "input_includes_cached", "same_as"})
_DATED = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{8})$")
_overrides: dict[str, Price] = {}


@functools.cache
def snapshot() -> dict[str, Any]:
    """The shipped price snapshot (its date, notes, and per-provider sources and models)."""
    text = resources.files("gauge.model.cost").joinpath("prices.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def _snapshot_prices() -> dict[str, dict[str, Price]]:
    data = snapshot()
    out: dict[str, dict[str, Price]] = {}
    where = "the shipped price snapshot"
    for provider, entry in data["providers"].items():
        source = f"snapshot {data['snapshot']} ({entry['source']})"
        prices = {
            name.lower(): _price(f"{provider}/{name}", spec, entry, source, where)
            for name, spec in entry["models"].items()
        }
        for alias, target in (entry.get("aliases") or {}).items():
            prices[alias.lower()] = prices[target.lower()]
        out[provider] = prices
    return out


def find_price(provider: str, model: str) -> Price | None:
    """The price of `provider/model` (overrides first, then the snapshot); None: unknown."""
    if (price := _overrides.get(f"{provider}/{model}".lower())) is not None:
        return price
    prices = _snapshot_prices().get(provider)
    if not prices:
        return None
    name = model.lower().removeprefix("models/")
    return prices.get(name) or prices.get(_DATED.sub("", name))


def overrides() -> dict[str, Price]:
    """The prices loaded from override files in this process, by `provider/model`."""
    return dict(_overrides)


def clear_overrides() -> None:
    """Forget the loaded override prices (back to the snapshot alone)."""
    _overrides.clear()


def load_overrides(path: str | Path) -> dict[str, Price]:
    """Read a --model-cost-config file and use its prices from now on; returns them.

    The file is `models: {provider/model: {input, output, cached_input, cache_write,
    reasoning, tiers, batch, input_includes_cached}}` (USD per 1M tokens), or
    `{provider/model: {same_as: provider/model}}` to price one model as another.
    """
    where = f"--model-cost-config {path}"
    data = _read(Path(path), where)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise ConfigError(
            f"{where}: give a 'models:' mapping of provider/model to prices "
            "(input, output per 1M tokens); see docs/cost.md"
        )
    if extra := sorted(set(data) - {"models"}):
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; the file holds one key, models")
    loaded: dict[str, Price] = {}
    for name, spec in models.items():
        loaded[str(name).lower()] = _override(str(name), spec, where)
    _overrides.update(loaded)
    return loaded


def _read(path: Path, where: str) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as ex:
        raise ConfigError(
            f"cannot read {where}: {ex.strerror}; give a YAML/JSON price file (docs/cost.md)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as ex:
        problem = str(ex).splitlines()[0]
        raise ConfigError(f"{where} is not valid YAML/JSON: {problem}") from None


def _override(name: str, spec: Any, where: str) -> Price:
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        raise ConfigError(f"{where}: models.{name}: name the model as provider/model")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: models.{name}: give a mapping of prices (input, output)")
    if unknown := sorted(set(spec) - _MODEL_FIELDS):
        raise ConfigError(
            f"{where}: models.{name}.{unknown[0]}: unknown field; use "
            + ", ".join(sorted(_MODEL_FIELDS))
        )
    if "same_as" in spec:
        target = str(spec["same_as"])
        base, _, base_model = target.partition("/")
        price = find_price(base, base_model)
        if price is None:
            raise ConfigError(
                f"{where}: models.{name}.same_as: {target!r} has no price in the snapshot "
                "or this file; give input and output instead"
            )
        return Price(
            name,
            price.rates,
            price.tiers,
            price.batch,
            price.input_includes_cached,
            f"{where} (same as {target}: {price.source})",
        )
    shipped = snapshot()["providers"].get(provider) or {}
    return _price(name, spec, shipped, where, where)


def _price(
    name: str, spec: dict[str, Any], provider: dict[str, Any], source: str, where: str
) -> Price:
    field = f"{where}: models.{name}"
    tiers = []
    for index, tier in enumerate(spec.get("tiers") or ()):
        if not isinstance(tier, dict) or not isinstance(tier.get("above"), int):
            raise ConfigError(f"{field}.tiers[{index}].above: give the prompt length in tokens")
        tiers.append(Tier(tier["above"], _rates(tier, f"{field}.tiers[{index}]")))
    batch_value = spec.get("batch", provider.get("batch"))
    batch = None if batch_value is None else _decimal(batch_value, f"{field}.batch")
    includes = spec.get("input_includes_cached", provider.get("input_includes_cached", True))
    if not isinstance(includes, bool):
        raise ConfigError(f"{field}.input_includes_cached: give true or false")
    ordered = tuple(sorted(tiers, key=lambda t: t.above))
    return Price(name, _rates(spec, field), ordered, batch, includes, source)


def _rates(spec: dict[str, Any], field: str) -> Rates:
    for required in ("input", "output"):
        if required not in spec:
            raise ConfigError(f"{field}.{required}: missing; give USD per 1M tokens")
    values = {
        key: _decimal(spec[key], f"{field}.{key}")
        for key in _RATE_FIELDS
        if spec.get(key) is not None
    }
    return Rates(**values)


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{field}: give a number (USD per 1M tokens), not {value!r}")
    try:
        # str() first: a YAML float such as 0.1 becomes Decimal("0.1"), not its binary value.
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(f"{field}: give a number (USD per 1M tokens), not {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{field}: give a number of 0 or more, not {value!r}")
    return number
