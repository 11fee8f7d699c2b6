"""get_model and model_from_config: names, memo, env, .env, keys, base URLs, files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gauge.errors import ConfigError, MissingAPIKey, ModelNameError
from gauge.model import factory, registry
from gauge.model.api import ModelAPI
from gauge.model.config import PROVIDER_FIELDS, GenerateConfig
from gauge.model.factory import get_model, model_from_config, parse_model_name
from gauge.model.messages import ChatMessage
from gauge.model.model import Model
from gauge.model.output import ModelOutput
from gauge.model.providers.mock import MockAPI
from gauge.model.tools import ToolChoice, ToolInfo


class KeyedAPI(ModelAPI):
    """A provider that needs a key and records closes."""

    needs_api_key = True
    honours = PROVIDER_FIELDS
    closed: ClassVar[list[str]] = []

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        return ModelOutput.from_content(self.model_name, "ok")

    async def close(self) -> None:
        KeyedAPI.closed.append(self.model_name)


class DeclaredVarsAPI(KeyedAPI):
    """Reads its key and base URL from declared env vars, first set wins."""

    api_key_vars = ("DECL_PRIMARY_API_KEY", "DECL_FALLBACK_API_KEY")
    base_url_vars = ("DECL_BASE_URL",)
    default_base_url = "https://default.example/v1"


@pytest.fixture(autouse=True)
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    registry.modelapi("keyed")(KeyedAPI)
    registry.modelapi("my-prov")(KeyedAPI)
    registry.modelapi("declared")(DeclaredVarsAPI)
    KeyedAPI.closed = []
    # env vars the tests (or a .env file they write) may set; undone after each test
    for name in ("KEYED_API_KEY", "KEYED_BASE_URL", "MY_PROV_API_KEY", "DOTENV_ONLY_VAR",
                 "DOTENV_SHARED_VAR", "DECL_PRIMARY_API_KEY", "DECL_FALLBACK_API_KEY",
                 "DECL_BASE_URL", "GAUGE_MODEL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    yield
    for name in ("keyed", "my-prov", "declared"):
        registry.unregister(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mock/x", ("mock", "x")),
        ("hf/meta-llama/Llama-3.1-8B", ("hf", "meta-llama/Llama-3.1-8B")),
        ("openai/ft:gpt-4o:org/1", ("openai", "ft:gpt-4o:org/1")),
        ("  mock/padded  ", ("mock", "padded")),
    ],
)
def test_parse_model_name(name: str, expected: tuple[str, str]) -> None:
    assert parse_model_name(name) == expected


@pytest.mark.parametrize("bad", ["gpt-4o", "/gpt-4o", "openai/", "", "/"])
def test_malformed_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ModelNameError) as info:
        get_model(bad, api_key="k")
    message = str(info.value)
    assert f"model {bad!r} must be provider/name" in message and "\n" not in message
    assert info.value.exit_code == 2


def test_model_with_slashes_reaches_the_provider_whole() -> None:
    model = get_model("mock/org/family/variant")
    assert model.api.model_name == "org/family/variant"
    assert model.name == "mock/org/family/variant"


def test_memo_returns_the_same_model_for_the_same_arguments() -> None:
    a = get_model("mock/x", config=GenerateConfig(temperature=0.5), latency=0.0)
    b = get_model("mock/x", config=GenerateConfig(temperature=0.5), latency=0.0)
    assert a is b


@pytest.mark.parametrize(
    "change",
    [
        {"model": "mock/y"},
        {"config": GenerateConfig(temperature=0.6)},
        {"config": GenerateConfig(temperature=0.5, seed=None)},
        {"base_url": "http://127.0.0.1:1"},
        {"api_key": "other"},
        {"latency": 0.001},
    ],
    ids=["model", "config", "config-explicit-none", "base_url", "api_key", "model_args"],
)
def test_memo_key_covers_every_argument(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "model": "mock/x",
        "config": GenerateConfig(temperature=0.5),
        "base_url": None,
        "api_key": None,
        "latency": 0.0,
    }
    first = get_model(**base)
    assert get_model(**base) is first
    assert get_model(**{**base, **change}) is not first


def test_memoize_false_builds_a_new_model_and_keeps_it_out_of_the_memo() -> None:
    memoized = get_model("mock/x")
    fresh = get_model("mock/x", memoize=False)
    assert fresh is not memoized
    assert get_model("mock/x") is memoized
    assert fresh not in factory._memo.values()


def test_a_model_passes_through() -> None:
    model = get_model("mock/x")
    assert get_model(model) is model


async def test_async_with_closes_and_leaves_the_memo() -> None:
    model = get_model("keyed/ctx", api_key="k")
    assert get_model("keyed/ctx", api_key="k") is model
    async with get_model("keyed/ctx", api_key="k") as inside:
        assert inside is model
        assert get_model("keyed/ctx", api_key="k") is not inside
        assert (await inside.generate("hi")).completion == "ok"
    assert KeyedAPI.closed == ["ctx"]
    assert inside not in factory._memo.values()


def test_gauge_model_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAUGE_MODEL", "mock/from-env")
    assert get_model().name == "mock/from-env"


def test_no_model_and_no_env_var_is_the_bundled_model() -> None:
    assert get_model().name == "hf/gauge-tiny"


def test_dotenv_found_from_cwd_upward_without_overriding_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "KEYED_API_KEY=from-dotenv\nDOTENV_SHARED_VAR=from-dotenv\nDOTENV_ONLY_VAR=yes\n"
        "GAUGE_MODEL=keyed/dotenv-model\n"
    )
    child = tmp_path / "a" / "b"
    child.mkdir(parents=True)
    monkeypatch.chdir(child)
    monkeypatch.setenv("DOTENV_SHARED_VAR", "from-env")
    model = get_model()
    assert model.name == "keyed/dotenv-model"
    assert model.api.api_key is not None and model.api.api_key.get() == "from-dotenv"
    assert os.environ["DOTENV_SHARED_VAR"] == "from-env"
    assert os.environ["DOTENV_ONLY_VAR"] == "yes"


def test_nearest_dotenv_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DOTENV_ONLY_VAR=outer\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / ".env").write_text("DOTENV_ONLY_VAR=inner\n")
    monkeypatch.chdir(inner)
    assert factory.load_dotenv() == inner / ".env"
    assert os.environ["DOTENV_ONLY_VAR"] == "inner"


def test_key_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYED_API_KEY", "env-key")
    assert get_model("keyed/a").api.api_key.get() == "env-key"  # type: ignore[union-attr]
    assert get_model("keyed/a", api_key="arg-key").api.api_key.get() == "arg-key"  # type: ignore[union-attr]


def test_base_url_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYED_BASE_URL", "http://env.example")
    assert get_model("keyed/a", api_key="k").api.base_url == "http://env.example"
    model = get_model("keyed/a", api_key="k", base_url="http://arg.example")
    assert model.api.base_url == "http://arg.example"
    assert get_model("mock/a").api.base_url is None


def test_declared_env_vars_first_set_wins_and_default_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DECL_FALLBACK_API_KEY", "fallback")
    model = get_model("declared/a")
    assert model.api.api_key.get() == "fallback"  # type: ignore[union-attr]
    assert model.api.base_url == "https://default.example/v1"
    monkeypatch.setenv("DECL_PRIMARY_API_KEY", "primary")
    monkeypatch.setenv("DECL_BASE_URL", "http://declared.example")
    model = get_model("declared/a", memoize=False)
    assert model.api.api_key.get() == "primary"  # type: ignore[union-attr]
    assert model.api.base_url == "http://declared.example"


def test_missing_key_names_the_env_var() -> None:
    with pytest.raises(MissingAPIKey) as info:
        get_model("my-prov/x")
    assert str(info.value) == (
        "provider 'my-prov' needs an API key: set MY_PROV_API_KEY or pass api_key="
    )
    with pytest.raises(MissingAPIKey, match="DECL_PRIMARY_API_KEY or DECL_FALLBACK_API_KEY"):
        get_model("declared/x")


def test_key_is_a_secret_in_repr() -> None:
    model = get_model("keyed/a", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(model.api.api_key)
    assert "sk-very-secret" not in str(model.api.api_key)
    assert "sk-very-secret" not in model.api.connection_key()


def test_model_from_config_type_and_args_shape() -> None:
    model = model_from_config(
        {"type": "mock", "args": {"model_name": "gpt-4o", "temperature": 0.7, "latency": 0.0}}
    )
    assert isinstance(model, Model)
    assert model.name == "mock/gpt-4o"
    assert model.config.temperature == 0.7
    assert isinstance(model.api, MockAPI)


def test_model_from_config_model_shape_with_config_and_args() -> None:
    model = model_from_config(
        {
            "model": "keyed/some/model",
            "api_key": "k",
            "base_url": "http://127.0.0.1:9",
            "max_tokens": 20,
            "config": {"seed": 3, "max_tokens": 10},
        }
    )
    assert model.name == "keyed/some/model"
    assert model.api.base_url == "http://127.0.0.1:9"
    assert model.config.seed == 3
    assert model.config.max_tokens == 20  # top-level fields beat the config block
    assert model.api.model_args == {}


def test_model_from_yaml_files_in_both_shapes(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("type: mock\nargs:\n  model_name: gpt-4o\n  temperature: 0.7\n")
    second = tmp_path / "b.yml"
    second.write_text("model: mock/llama/3\ntop_p: 0.5\nseed: 4\n")
    a = model_from_config(first)
    b = model_from_config(str(second))
    assert (a.name, a.config.temperature) == ("mock/gpt-4o", 0.7)
    assert (b.name, b.config.top_p, b.config.seed) == ("mock/llama/3", 0.5, 4)


def test_model_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"model": "mock/j", "temperature": 0.1}')
    assert model_from_config(path).config.temperature == 0.1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"args": {"temperature": 1}}, "give 'model: provider/name' or 'type' with 'args'"),
        ({"type": "mock", "args": {"temperature": 1}}, "'args.model_name' is required"),
        ({"model": "mock/x", "temperature": 9}, "temperature: Input should be less than"),
        ({"model": "mock/x", "config": {"tempreature": 1}}, "tempreature: Extra inputs"),
        ([1, 2], "expected a mapping, got list"),
    ],
)
def test_bad_model_configs_are_one_line_config_errors(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        model_from_config(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_config_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read model config .*missing\.yaml"):
        model_from_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        model_from_config(broken)
    assert "not valid YAML/JSON" in str(info.value) and "\n" not in str(info.value)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match=r"scalar\.yaml: expected a mapping, got str"):
        model_from_config(scalar)
    bad_name = tmp_path / "bad.yaml"
    bad_name.write_text("model: nopath\n")
    with pytest.raises(ModelNameError):
        model_from_config(bad_name)


def test_config_may_be_a_dict_validated_like_a_config_file() -> None:
    model = get_model("mock/x", config={"temperature": 0.25, "seed": 1})
    assert (model.config.temperature, model.config.seed) == (0.25, 1)
    assert get_model("mock/x", config=GenerateConfig(temperature=0.25, seed=1)) is model
    with pytest.raises(ConfigError, match="bad config: temperature: Input should be less"):
        get_model("mock/x", config={"temperature": 5})
    with pytest.raises(ConfigError, match="config must be a GenerateConfig or a dict, got list"):
        get_model("mock/x", config=[("temperature", 1)])  # type: ignore[arg-type]


def test_a_non_string_model_name_is_a_name_error() -> None:
    with pytest.raises(ModelNameError, match="model must be a 'provider/name' string, got int"):
        get_model(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["openai/gpt-4o", "openai-api/svc/m", "vllm/m"])
def test_a_base_url_that_is_not_http_is_refused_up_front(name: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^base URL 'notaurl' must start with http:// or https://"
    ):
        get_model(name, base_url="notaurl", api_key="k", memoize=False)
