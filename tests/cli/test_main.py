"""The `gauge` command: help, version, lazy subcommands, `gauge models`, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

import gauge
from gauge.cli.main import COMMANDS, cli, main
from gauge.model import registry
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.tools import ToolChoice, ToolInfo


def run_gauge(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a fresh process."""
    code = "import sys; from gauge.cli.main import main; sys.argv[0] = 'gauge'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; from gauge.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith('gauge.cli.') and m != 'gauge.cli.main'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name, (_, _, help_text) in COMMANDS.items():
        assert f"{name}  " in result.stdout and help_text in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_via_the_console_entry_point(flag: str) -> None:
    result = run_gauge(flag)
    assert result.returncode == 0
    assert "Usage: gauge [OPTIONS] COMMAND [ARGS]..." in result.stdout
    assert "models" in result.stdout


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = CliRunner().invoke(cli, [flag])
    assert result.exit_code == 0
    assert result.output.strip() == f"gauge, version {gauge.__version__}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_imports_and_has_help(name: str) -> None:
    module, attribute, _ = COMMANDS[name]
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"gauge {name} --help failed to load {module}:{attribute}: {result.exception!r}"
    )
    assert result.exit_code == 0
    assert f"Usage: cli {name}" in result.output or f"Usage: gauge {name}" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = run_gauge("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


class CliAPI(ModelAPI):
    """A provider registered only for these tests."""

    extra = "cli-extra"
    requires = ("gauge_cli_test_sdk_missing",)
    needs_api_key = True
    honours = frozenset({"temperature", "seed"})

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        return ModelOutput.from_content(self.model_name, "")


@pytest.fixture
def cli_provider() -> Iterator[None]:
    registry.modelapi("clitest")(CliAPI)
    registry.modelapi("clibroken")(lambda: dict)  # type: ignore[arg-type,return-value]
    yield
    registry.unregister("clitest")
    registry.unregister("clibroken")


def test_models_table(cli_provider: None) -> None:
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("clitest/  extra=cli-extra  missing: pip install 'gauge[cli-extra]'")
    assert lines[start + 1].split() == ["key:", "CLITEST_API_KEY", "base", "url:",
                                        "CLITEST_BASE_URL"]  # fmt: skip
    assert lines[start + 2].strip() == "can: chat"
    assert lines[start + 3].strip() == "honours: seed, temperature"
    hf_line = lines.index("hf/  extra=hf  installed")
    assert lines[hf_line + 2].strip() == "can: chat, streaming, loglikelihood"
    mock_line = lines.index("mock/  extra=-  installed")
    assert "(optional)" in lines[mock_line + 1]
    assert any(line.startswith("clibroken/") and "failed to load" in line for line in lines)


def test_models_json(cli_provider: None) -> None:
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0
    rows = {row["provider"]: row for row in json.loads(result.output)}
    assert set(rows) == set(registry.provider_names())
    assert rows["clitest"] == {
        "provider": "clitest",
        "extra": "cli-extra",
        "installed": False,
        "needs_api_key": True,
        "api_key_vars": ["CLITEST_API_KEY"],
        "base_url_vars": ["CLITEST_BASE_URL"],
        "default_base_url": None,
        "honours": ["seed", "temperature"],
        "streaming": False,
        "chat": True,
        "loglikelihood": False,
    }
    assert rows["hf"]["loglikelihood"] is True and rows["hf"]["chat"] is True
    assert rows["mock"]["installed"] is True and "seed" in rows["mock"]["honours"]
    broken = rows["clibroken"]
    assert broken["installed"] is False and "did not resolve" in broken["error"]
    assert set(broken) >= set(rows["clitest"])  # every row has the same keys


def test_gauge_errors_print_one_line_and_exit_with_their_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    @click.command(name="boom")
    def boom() -> None:
        from gauge.model.factory import get_model

        get_model("nosuchprovider/x")

    monkeypatch.setitem(COMMANDS, "boom", (__name__, "boom_command", "test"))
    monkeypatch.setattr(sys.modules[__name__], "boom_command", boom, raising=False)
    with pytest.raises(SystemExit) as info:
        main(["boom"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown provider 'nosuchprovider'")
    assert err.count("\n") == 1
