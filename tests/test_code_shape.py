"""The model layer stays readable: no function in gauge/model (rate/ included) over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import gauge

MAX_LINES = 60
MODEL = Path(gauge.__file__).parent / "model"


def long_functions(root: Path, limit: int) -> list[str]:
    """`path:line name (n lines)` of each function under `root` longer than `limit`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    found.append(
                        f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    return found


def test_no_function_in_the_model_layer_is_over_60_lines() -> None:
    assert long_functions(MODEL, MAX_LINES) == []


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    package = tmp_path / "model"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (package / "big.py").write_text(f"def big():\n{body}\n", encoding="utf-8")
    (package / "small.py").write_text("def small():\n    return 1\n", encoding="utf-8")
    assert long_functions(package, MAX_LINES) == ["model/big.py:1 big (62 lines)"]
