"""The README as a newcomer uses it: its snippets run as pasted, its commands match CI.

- every ```python block is a script: it compiles (no top-level await) and runs;
- .ci/run runs exactly the README's test command;
- the install commands name the CPU torch while the hf extra only sets a floor, and
  the `all` extra holds every other extra (but dev).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```$", README, re.MULTILINE | re.DOTALL)
BASH_BLOCKS = re.findall(r"^```bash\n(.*?)^```$", README, re.MULTILINE | re.DOTALL)
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_the_readme_has_python_snippets() -> None:
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_each_python_snippet_compiles_as_a_script(index: int) -> None:
    # A top-level `await` is a SyntaxError here, as it is for `python snippet.py`.
    compile(PYTHON_BLOCKS[index], f"README.md python block {index + 1}", "exec")


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="the snippets use hf/gauge-tiny"
)
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_each_python_snippet_runs_as_pasted(index: int, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(PYTHON_BLOCKS[index])
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def _command(text: str, starts: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(starts)]
    assert len(lines) == 1, f"expected one command starting {starts!r}: {lines}"
    return lines[0]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme_test = _command(BASH_BLOCKS[0], "(command -v redis-server")
    assert _command(ci, "(command -v redis-server") == readme_test
    assert "pytest" in readme_test


def test_install_commands_name_the_cpu_torch_and_the_extra_only_a_floor() -> None:
    first = _command(BASH_BLOCKS[0], "python3 -m venv .venv && .venv/bin/pip install")
    test = _command(BASH_BLOCKS[0], "(command -v redis-server")
    for command in (first, test):
        assert "pip install -q torch==2.13.0 -e '." in command
    torch = [spec for spec in EXTRAS["hf"] if spec.startswith("torch")]
    assert torch and all("==" not in spec for spec in torch), torch


def test_the_all_extra_holds_every_other_extra_but_dev() -> None:
    [spec] = EXTRAS["all"]
    named = set(re.fullmatch(r"gauge\[(.*)\]", spec).group(1).split(","))  # type: ignore[union-attr]
    assert named == set(EXTRAS) - {"all", "dev"}
