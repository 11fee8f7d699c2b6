"""Close the loop: `gauge eval` through `gauge serve` scores exactly as the in-process model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def eval_run(model: str, log_dir: Path) -> dict[str, Any]:
    try:
        main(
            [
                "eval",
                str(EXAMPLES / "arithmetic.py"),
                "--limit",
                "100",
                "--model",
                model,
                "--log-dir",
                str(log_dir),
            ]
        )
    except SystemExit as ex:
        assert not ex.code, f"gauge eval exited with {ex.code}"
    [journal] = log_dir.glob("*.jsonl")
    records = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
    return {r["id"]: r for r in records if r["type"] == "sample"}


def test_eval_through_the_server_equals_in_process(
    tiny_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    local = eval_run("hf/gauge-tiny", tmp_path / "local")
    monkeypatch.setenv("LOCAL_BASE_URL", tiny_server.url)
    served = eval_run("openai-api/local/gauge-tiny", tmp_path / "served")
    capsys.readouterr()
    assert len(local) == len(served) == 100
    assert served.keys() == local.keys()
    for key, sample in local.items():
        other = served[key]
        assert other["output"]["completion"] == sample["output"]["completion"], key
        assert other["scores"] == sample["scores"], key
        assert other["usage"]["input_tokens"] == sample["usage"]["input_tokens"], key
        assert other["usage"]["output_tokens"] == sample["usage"]["output_tokens"], key
    correct = sum(s["scores"]["match"]["value"] == "C" for s in served.values())
    assert correct >= 95
