from pathlib import Path

import pytest

from gauge.evaluation import journal
from gauge.evaluation.journal import JournalError, JournalWriter, read_journal
from gauge.evaluation.redact import Redactor


def test_write_read_and_last_line_wins(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, Redactor())
    writer.write({"type": "header", "task": {"name": "t"}})
    writer.write({"type": "sample", "id": "a", "epoch": 1, "error": {"type": "X"}})
    writer.write({"type": "sample", "id": "a", "epoch": 1, "error": None, "scores": {}})
    writer.write({"type": "sample", "id": 2, "epoch": 2, "error": None})
    writer.write({"type": "summary", "status": "success"})
    writer.close()
    read = read_journal(path)
    assert read.header["task"] == {"name": "t"}
    assert read.done() == {("a", 1), (2, 2)}
    assert read.summary == {"type": "summary", "status": "success"}


def test_batches_reach_the_file_without_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "FLUSH_SECONDS", 3600.0)
    path = tmp_path / "j.jsonl"
    writer = JournalWriter(path, Redactor())
    for i in range(journal.FLUSH_LINES - 1):
        writer.write({"type": "sample", "id": i})
    assert path.read_bytes() == b""  # still buffered: fewer than FLUSH_LINES lines
    writer.write({"type": "sample", "id": "last"})
    assert path.read_bytes().count(b"\n") == journal.FLUSH_LINES  # one full batch flushed
    writer.close()


def test_torn_tail_is_skipped_and_cut_before_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"type": "header"}\n{"type": "sample", "id": 1, "epoch": 1}\n{"type": "sam')
    read = read_journal(path)
    assert read.torn_lines == 1 and read.done() == {(1, 1)}
    writer = JournalWriter(path, Redactor(), append=True)
    writer.write({"type": "sample", "id": 2, "epoch": 1})
    writer.close()
    assert path.read_bytes().endswith(b'"epoch": 1}\n{"type":"sample","id":2,"epoch":1}\n')
    assert read_journal(path).torn_lines == 0


def test_not_a_journal(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"type": "sample"}\n')
    with pytest.raises(JournalError, match="not a gauge journal"):
        read_journal(tmp_path / "x.jsonl")
    with pytest.raises(JournalError, match="not found"):
        read_journal(tmp_path / "missing.jsonl")
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(JournalError, match="empty journal"):
        read_journal(tmp_path / "e.jsonl")
