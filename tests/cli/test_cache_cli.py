"""`gauge cache`: path, list, size, clear, prune and explain, run in-process."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from gauge.cli.main import main
from gauge.model.factory import get_model


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    return path


def gauge(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as ex:
        code = int(ex.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def fill(model: str, *prompts: str) -> None:
    sync = get_model(model, memoize=False).sync()
    for prompt in prompts:
        sync.generate(prompt, cache=True)


@pytest.mark.parametrize("command", ["path", "list", "size", "clear", "prune", "explain"])
def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = gauge(capsys, "cache", command, "--help")
    assert code == 0 and f"Usage: gauge cache {command}" in out


def test_path(capsys: pytest.CaptureFixture[str], cache_home: Path) -> None:
    assert gauge(capsys, "cache", "path") == (0, f"{cache_home / 'responses.sqlite3'}\n", "")


def test_list_size_clear(capsys: pytest.CaptureFixture[str], cache_home: Path) -> None:
    assert gauge(capsys, "cache", "list")[1] == "the cache is empty\n"
    fill("mock/a", "one", "two")
    fill("mock/b", "three")
    code, out, _ = gauge(capsys, "cache", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("mock/a  2 entries  ") and lines[1].startswith("mock/b  1 entries")
    code, out, _ = gauge(capsys, "cache", "size", "--model", "mock/b")
    assert out.splitlines()[0].startswith("mock/b  ") and "on disk: " in out
    assert gauge(capsys, "cache", "clear", "--model", "mock/a")[1] == "cleared mock/a\n"
    assert gauge(capsys, "cache", "clear", "--model", "mock/a")[1] == "nothing stored for mock/a\n"
    assert gauge(capsys, "cache", "clear", "--all")[1] == "cleared the whole cache\n"
    assert gauge(capsys, "cache", "list")[1] == "the cache is empty\n"


def test_clear_needs_a_choice(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gauge(capsys, "cache", "clear")
    assert code == 2 and out == ""
    assert err == "error: say what to clear: --model provider/name, or --all for everything\n"


def test_list_expired_and_prune(capsys: pytest.CaptureFixture[str], cache_home: Path) -> None:
    fill("mock/a", "one", "two")
    with sqlite3.connect(cache_home / "responses.sqlite3") as raw:
        raw.execute("UPDATE entries SET expires = ? WHERE rowid = 1", (time.time() - 10,))
    code, out, _ = gauge(capsys, "cache", "list", "--expired")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == "1 expired entry"
    key, model, *_ = lines[0].split()
    assert len(key) == 64 and model == "mock/a"
    assert gauge(capsys, "cache", "prune")[1] == "pruned 1 expired entry\n"
    assert gauge(capsys, "cache", "list", "--expired")[1] == "0 expired entries\n"


def test_corrupt_database_one_line_error_then_clear_all_repairs(
    capsys: pytest.CaptureFixture[str], cache_home: Path
) -> None:
    cache_home.mkdir()
    (cache_home / "responses.sqlite3").write_bytes(b"\x00garbage" * 500)
    code, out, err = gauge(capsys, "cache", "list")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: cache database ")
    assert "run `gauge cache clear --all`" in err
    assert gauge(capsys, "cache", "clear", "--all")[0] == 0
    assert gauge(capsys, "cache", "list") == (0, "the cache is empty\n", "")


def test_explain_request_file_hit_and_miss(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fill("mock/a", "What is 6*7?")
    hit = tmp_path / "hit.yaml"
    hit.write_text("model: mock/a\ninput: What is 6*7?\n")
    code, out, _ = gauge(capsys, "cache", "explain", str(hit))
    assert code == 0
    assert out.splitlines()[0] == "epoch 0  model mock/a"
    assert out.splitlines()[2] == "HIT: an entry with this key is stored and fresh"
    miss = tmp_path / "miss.json"
    miss.write_text('{"model": "mock/a", "input": "What is 6*7?", "config": {"seed": 3}}')
    code, out, _ = gauge(capsys, "cache", "explain", str(miss))
    assert "MISS: no entry has this key" in out
    assert "9 of 10 components equal, 1 entries for this model" in out
    assert "  differs: config.seed: set in the request (3), absent in the entry" in out


def test_explain_journal_sample(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fill("mock/a", "What is 6*7?")
    journal = tmp_path / "log.jsonl"
    journal.write_bytes(
        orjson.dumps({"id": "q1", "epoch": 0, "model": "mock/a", "input": "What is 6*7?"}) + b"\n"
    )
    code, out, _ = gauge(capsys, "cache", "explain", "--log", str(journal), "--sample", "q1")
    assert code == 0 and out.startswith("sample q1  epoch 0  model mock/a\n")
    assert "\nHIT: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a request file, or --log JOURNAL --sample ID (not both)"),
        (["--log", "x.jsonl"], "--log needs --sample ID (the sample's id in the journal)"),
        (["missing.yaml"], "cannot read missing.yaml: No such file or directory"),
    ],
)
def test_explain_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = gauge(capsys, "cache", "explain", *args)
    assert (code, out, err) == (2, "", f"error: {message}\n")
