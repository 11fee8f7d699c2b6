"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

_STRIP_SUFFIXES = ("_API_KEY", "_BASE_URL", "_API_TOKEN", "_ACCOUNT_ID")
_STRIP_NAMES = {
    "GAUGE_MODEL",
    "INSPECT_EVAL_MODEL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
}


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Strip provider keys, base URLs and proxies; run from an empty directory."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.endswith(_STRIP_SUFFIXES) or upper in _STRIP_NAMES or upper.startswith("GAUGE_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    # The response cache's default home (XDG_CACHE_HOME/gauge): one per test, so no
    # test reads answers another test (or an earlier run) stored, e.g. after a fake
    # server happens to get the same port and so the same cache key.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    from gauge.model import factory

    factory.clear_memo()
    yield
    factory.clear_memo()


@pytest.fixture(autouse=True)
def journal_lines_fit_the_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every journal line an eval run in a test writes fits journal.schema.json.

    Checked as the run writes it (the runner's writer is swapped for a checking one),
    not by reading files afterwards: tests also hand-edit journals to play older
    formats, and unit tests of JournalWriter write bare records on purpose. Yields
    the problems found so far (tests/evaluation/test_journal_schema.py reads them).
    """
    import orjson

    from gauge.evaluation import journal, runner
    from gauge.evaluation.journal_schema import record_problem

    problems: list[str] = []

    def check(record: dict[str, Any]) -> None:
        if (problem := record_problem(orjson.loads(journal.dumps(record)))) is not None:
            problems.append(problem)

    class CheckedWriter(journal.JournalWriter):
        def write(self, record: dict[str, Any]) -> None:
            check(record)
            super().write(record)

        def write_now(self, record: dict[str, Any]) -> None:
            check(record)
            super().write_now(record)

    monkeypatch.setattr(runner, "JournalWriter", CheckedWriter)
    yield problems
    assert not problems, f"journal lines that break journal.schema.json: {problems}"
