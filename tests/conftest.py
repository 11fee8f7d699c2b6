"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_STRIP_SUFFIXES = ("_API_KEY", "_BASE_URL", "_API_TOKEN", "_ACCOUNT_ID")
_STRIP_NAMES = {"GAUGE_MODEL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


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
    from gauge.model import factory

    factory.clear_memo()
    yield
    factory.clear_memo()
