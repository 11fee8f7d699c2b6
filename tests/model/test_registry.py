"""Provider registry: @modelapi, built-ins, entry-point plugins and load errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gauge.errors import MissingExtra, UnknownProvider
from gauge.model import registry
from gauge.model.api import ModelAPI
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.providers.mock import MockAPI
from gauge.model.tools import ToolChoice, ToolInfo


class EchoAPI(ModelAPI):
    """Answers with a fixed text."""

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: object,
    ) -> ModelOutput:
        return ModelOutput.from_content(self.model_name, "echo-api")


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Names appended here are unregistered after the test."""
    names: list[str] = []
    yield names
    for name in names:
        registry.unregister(name)


@pytest.fixture
def fresh_entry_points() -> Iterator[None]:
    """Re-read entry points before and after the test (the lookup is cached)."""
    registry._entry_points.cache_clear()
    yield
    registry._entry_points.cache_clear()


def test_builtin_mock_is_known_and_loads() -> None:
    assert "mock" in registry.provider_names()
    assert registry.provider_class("mock") is MockAPI
    assert MockAPI.name == "mock"


async def test_register_a_class(cleanup: list[str]) -> None:
    cleanup.append("echo-cls")
    registry.modelapi("echo-cls")(EchoAPI)
    assert "echo-cls" in registry.provider_names()
    assert registry.provider_class("echo-cls") is EchoAPI
    output = await get_model("echo-cls/some/model").generate("hi")
    assert output.completion == "echo-api"


def test_register_a_factory_is_lazy(cleanup: list[str]) -> None:
    calls: list[int] = []

    def factory() -> type[ModelAPI]:
        calls.append(1)

        class Lazy(EchoAPI):
            pass

        return Lazy

    cleanup.append("lazy")
    registry.modelapi("lazy")(factory)
    assert calls == []  # registering does not build the class
    assert "lazy" in registry.provider_names()
    first = registry.provider_class("lazy")
    second = registry.provider_class("lazy")
    assert first is second and calls == [1]
    assert first.name == "lazy"


def test_registration_overrides_and_reregistering_reloads(cleanup: list[str]) -> None:
    class Other(EchoAPI):
        pass

    cleanup.append("swap")
    registry.modelapi("swap")(EchoAPI)
    assert registry.provider_class("swap") is EchoAPI
    registry.modelapi("swap")(Other)
    assert registry.provider_class("swap") is Other
    registry.unregister("swap")
    with pytest.raises(UnknownProvider):
        registry.provider_class("swap")


@pytest.mark.parametrize("bad", ["", "a/b"])
def test_bad_provider_name_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="must be non-empty and contain no '/'"):
        registry.modelapi(bad)


def test_factory_returning_a_non_provider_is_an_error(cleanup: list[str]) -> None:
    cleanup.append("notapi")
    registry.modelapi("notapi")(lambda: dict)  # type: ignore[arg-type,return-value]
    with pytest.raises(UnknownProvider, match="did not resolve to a ModelAPI subclass"):
        registry.provider_class("notapi")


def test_unknown_provider_suggests_and_lists_known() -> None:
    with pytest.raises(UnknownProvider) as info:
        registry.provider_class("mokc")
    message = str(info.value)
    assert "unknown provider 'mokc'" in message
    assert "did you mean 'mock'?" in message
    assert "known providers: " in message and "mock" in message.split("known providers: ")[1]
    assert "\n" not in message


def test_unknown_provider_without_close_match_has_no_hint() -> None:
    with pytest.raises(UnknownProvider) as info:
        registry.provider_class("zzzzzzzz")
    assert "did you mean" not in str(info.value)


def test_get_model_reports_unknown_provider() -> None:
    with pytest.raises(UnknownProvider, match="did you mean 'mock'"):
        get_model("mocks/x")


def write_plugin(root: Path, dist: str, module: str, body: str, entry: str) -> None:
    """A real installed distribution: a module plus a dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gauge.providers]\n{entry}\n")


PLUGIN = """
from gauge.model.api import ModelAPI
from gauge.model.output import ModelOutput

class PluginAPI(ModelAPI):
    extra = "plugin"
    async def generate(self, input, tools, tool_choice, config):
        return ModelOutput.from_content(self.model_name, "from plugin " + self.model_name)
"""


async def test_entry_point_plugin_from_installed_dist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_entry_points: None
) -> None:
    write_plugin(tmp_path, "gauge_plugin_demo", "gauge_plugin_demo_mod", PLUGIN,
                 "plugdemo = gauge_plugin_demo_mod:PluginAPI")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gauge_plugin_demo_mod", raising=False)
    assert "plugdemo" in registry.provider_names()
    assert "gauge_plugin_demo_mod" not in sys.modules  # listed, not imported
    output = await get_model("plugdemo/m-1").generate("hi")
    assert output.completion == "from plugin m-1"
    assert registry.provider_class("plugdemo").name == "plugdemo"
    registry._loaded.pop("plugdemo", None)


def test_entry_point_with_missing_dependency_names_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_entry_points: None
) -> None:
    body = "import gauge_no_such_sdk_xyz\n"
    write_plugin(tmp_path, "gauge_plugin_broken", "gauge_plugin_broken_mod", body,
                 "broken = gauge_plugin_broken_mod:PluginAPI")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtra) as info:
        registry.provider_class("broken")
    assert str(info.value) == (
        "provider 'broken' needs 'gauge_no_such_sdk_xyz': pip install gauge_no_such_sdk_xyz"
    )


def test_entry_point_with_missing_attribute_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_entry_points: None
) -> None:
    write_plugin(tmp_path, "gauge_plugin_noattr", "gauge_plugin_noattr_mod", "X = 1\n",
                 "noattr = gauge_plugin_noattr_mod:Missing")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownProvider, match="gauge_plugin_noattr_mod has no 'Missing'"):
        registry.provider_class("noattr")


def test_builtin_that_cannot_import_its_sdk_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[str]
) -> None:
    monkeypatch.setitem(registry.BUILTINS, "fakesdk", "gauge_fake_sdk_module_xyz:API")
    cleanup.append("fakesdk")
    with pytest.raises(MissingExtra, match="pip install gauge_fake_sdk_module_xyz"):
        registry.provider_class("fakesdk")


def test_builtin_pointing_at_a_missing_gauge_module_is_not_called_an_extra(
    monkeypatch: pytest.MonkeyPatch, cleanup: list[str]
) -> None:
    monkeypatch.setitem(registry.BUILTINS, "ghost", "gauge.model.providers.ghost_xyz:API")
    cleanup.append("ghost")
    with pytest.raises(UnknownProvider, match=r"load from gauge\.model\.providers\.ghost"):
        registry.provider_class("ghost")


def test_missing_extra_from_requires_names_the_pip_command(cleanup: list[str]) -> None:
    class NeedsSDK(EchoAPI):
        extra = "fancy"
        requires = ("gauge_fancy_sdk_not_installed",)

    cleanup.append("fancy")
    registry.modelapi("fancy")(NeedsSDK)
    with pytest.raises(MissingExtra) as info:
        get_model("fancy/model")
    assert str(info.value) == (
        "provider 'fancy' needs 'gauge_fancy_sdk_not_installed': pip install 'gauge[fancy]'"
    )
    assert info.value.exit_code == 2


def test_factory_that_cannot_import_its_sdk_names_the_module(cleanup: list[str]) -> None:
    def factory() -> type[ModelAPI]:
        import gauge_factory_sdk_missing_xyz  # type: ignore[import-not-found]  # noqa: F401

        return EchoAPI

    cleanup.append("factsdk")
    registry.modelapi("factsdk")(factory)
    with pytest.raises(MissingExtra, match="pip install gauge_factory_sdk_missing_xyz"):
        registry.provider_class("factsdk")


def test_is_importable() -> None:
    assert registry.is_importable("json")
    assert not registry.is_importable("gauge_definitely_not_a_module")
    assert not registry.is_importable("gauge_definitely_not_a_module.sub")


def test_registry_import_loads_no_provider_module() -> None:
    code = (
        "import sys, gauge.model.registry as r, gauge.model.factory;"
        "names = r.provider_names();"
        "assert 'mock' in names, names;"
        "loaded = sorted(m for m in sys.modules if m.startswith('gauge.model.providers.'));"
        "print(','.join(loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_entry_point_that_raises_on_import_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_entry_points: None
) -> None:
    body = "raise RuntimeError('plugin exploded\\n at import')\n"
    write_plugin(tmp_path, "gauge_plugin_boom", "gauge_plugin_boom_mod", body,
                 "boom = gauge_plugin_boom_mod:API")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownProvider) as info:
        registry.provider_class("boom")
    assert str(info.value) == (
        "provider 'boom' failed to load from gauge_plugin_boom_mod:API: plugin exploded at import"
    )
    from gauge.model.catalog import provider_rows

    rows = {row["provider"]: row for row in provider_rows()}
    assert rows["boom"]["error"] == str(info.value)  # `gauge models` still lists the rest
    assert rows["mock"]["installed"] is True
