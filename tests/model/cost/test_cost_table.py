"""The shipped snapshot, lookup of dated ids and aliases, and --model-cost-config overrides."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gauge import get_model
from gauge.errors import ConfigError
from gauge.model.cost import clear_overrides, find_price, load_overrides, snapshot


@pytest.fixture(autouse=True)
def no_overrides() -> Iterator[None]:
    clear_overrides()
    yield
    clear_overrides()


def test_the_snapshot_is_dated_sourced_and_covers_every_provider_of_the_issue() -> None:
    data = snapshot()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["snapshot"])
    providers = data["providers"]
    for name in ("openai", "azure", "anthropic", "google", "together", "groq", "mistral"):
        assert providers[name]["source"].startswith("https://"), name
        assert providers[name]["models"], f"{name} has no prices"
    # Every listed model parses into a price (a bad figure would fail here, not mid-run).
    for provider, entry in providers.items():
        for model in entry["models"]:
            assert find_price(provider, model) is not None, f"{provider}/{model}"


@pytest.mark.parametrize(
    ("provider", "name", "entry"),
    [
        ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        ("openai", "GPT-4.1", "openai/gpt-4.1"),
        ("openai", "chatgpt-4o-latest", "openai/gpt-4o"),
        ("anthropic", "claude-sonnet-4-20250514", "anthropic/claude-sonnet-4"),
        ("anthropic", "claude-sonnet-4@20250514", "anthropic/claude-sonnet-4"),
        ("anthropic", "claude-3-5-haiku-latest", "anthropic/claude-3-5-haiku"),
        ("anthropic", "claude-opus-4-1-20250805", "anthropic/claude-opus-4-1"),
        ("google", "models/gemini-2.5-pro", "google/gemini-2.5-pro"),
        ("mistral", "mistral-medium-latest", "mistral/mistral-medium-2604"),
        ("azure", "gpt-4o-2024-11-20", "azure/gpt-4o"),
    ],
)
def test_dated_ids_and_aliases_find_their_model(provider: str, name: str, entry: str) -> None:
    found = find_price(provider, name)
    assert found is not None and found.model == entry
    assert found.source.startswith(f"snapshot {snapshot()['snapshot']} (https://")


@pytest.mark.parametrize(
    ("provider", "name"),
    [("openai", "gpt-99"), ("openai", "gpt-4o-audio-preview"), ("mock", "test"), ("hf", "x")],
)
def test_models_not_in_the_snapshot_have_no_price(provider: str, name: str) -> None:
    assert find_price(provider, name) is None


def test_a_model_looks_its_price_up_once_and_azure_is_its_own_provider() -> None:
    openai = get_model(
        "openai/gpt-4o", api_key="k", base_url="http://127.0.0.1:9/v1", memoize=False
    )
    azure = get_model(
        "openai/gpt-4o", api_key="k", base_url="http://127.0.0.1:9", azure=True, memoize=False
    )
    assert openai.price is not None and openai.price.model == "openai/gpt-4o"
    assert azure.price is not None and azure.price.model == "azure/gpt-4o"
    assert openai.price is openai.price  # cached on the model


PRICES = """\
models:
  mock/priced:
    input: 2
    output: 8.00
    cached_input: 0.1
    batch: 0.5
    tiers:
      - {above: 1000, input: 4, output: 16}
  azure/prod-deployment:
    same_as: openai/gpt-4o-mini
  openai/gpt-4o:
    input: "1.00"
    output: "3"
"""


def test_a_good_override_file_prices_new_models_and_wins_over_the_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    loaded = load_overrides(path)
    assert set(loaded) == {"mock/priced", "azure/prod-deployment", "openai/gpt-4o"}
    priced = find_price("mock", "priced")
    assert priced is not None
    assert priced.rates.input == Decimal("2") and priced.rates.cached_input == Decimal("0.1")
    assert priced.batch == Decimal("0.5") and priced.tiers[0].rates.output == Decimal(16)
    deployment = find_price("azure", "prod-deployment")
    assert deployment is not None and deployment.rates.output == Decimal("0.60")
    assert "same as openai/gpt-4o-mini" in deployment.source
    override = find_price("openai", "gpt-4o")
    assert override is not None and override.rates.input == Decimal("1.00")
    assert override.batch == Decimal("0.5")  # the provider's multiplier still applies
    clear_overrides()
    back = find_price("openai", "gpt-4o")
    assert back is not None and back.rates.input == Decimal("2.50")


def test_a_json_override_file_reads_too(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"groq/new-model": {"input": 0.2, "output": 0.4}}}')
    load_overrides(path)
    found = find_price("groq", "new-model")
    assert (
        found is not None and found.rates.input == Decimal("0.2") and found.batch == Decimal("0.5")
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("models: [", "is not valid YAML/JSON"),
        ("- a\n- b\n", "give a 'models:' mapping of provider/model to prices"),
        ("models:\n  mock/x: {input: 1}\n", "models.mock/x.output: missing; give USD per 1M"),
        ("models:\n  mock/x: {input: abc, output: 1}\n", "models.mock/x.input: give a number"),
        ("models:\n  mock/x: {input: -1, output: 1}\n", "models.mock/x.input: give a number of 0"),
        ("models:\n  mock/x: {input: true, output: 1}\n", "models.mock/x.input: give a number"),
        ("models:\n  mock/x: {input: 1, output: 1, cahced: 1}\n", "models.mock/x.cahced: unknown"),
        ("models:\n  nomodel: {input: 1, output: 1}\n", "models.nomodel: name the model as"),
        ("models:\n  mock/x: {same_as: openai/gpt-99}\n", "models.mock/x.same_as: 'openai/gpt-99'"),
        (
            "models:\n  mock/x: {input: 1, output: 1, tiers: [{input: 2, output: 2}]}\n",
            "models.mock/x.tiers[0].above: give the prompt length",
        ),
        ("models:\n  mock/x: {input: 1, output: 1}\nextra: 1\n", "unknown key 'extra'"),
    ],
)
def test_a_bad_override_file_is_one_line_naming_the_file_and_the_field(
    tmp_path: Path, text: str, error: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    message = str(info.value)
    assert message.startswith(f"--model-cost-config {path}") and error in message, message
    assert "\n" not in message
    assert find_price("mock", "x") is None  # nothing half-loaded


def test_a_missing_override_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read --model-cost-config .*nope.yaml"):
        load_overrides(tmp_path / "nope.yaml")
