"""The management API: cache_path, cache_size, cache_clear, cache_list_expired, cache_prune."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from gauge.model.cache import (
    CacheError,
    cache_clear,
    cache_list_expired,
    cache_path,
    cache_prune,
    cache_size,
)
from gauge.model.cache.api import cache_models
from gauge.model.cache.store import DB_NAME, cache_dir
from gauge.model.factory import get_model


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    return path


async def fill(model: str, prompts: list[str], expiry: str = "1W") -> None:
    m = get_model(model, memoize=False)
    for prompt in prompts:
        await m.generate(prompt, cache=expiry)


def expire(path: Path, model: str) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE entries SET expires = ? WHERE model = ?", (time.time() - 1, model))


def test_cache_path_follows_gauge_cache_dir(cache_home: Path) -> None:
    assert cache_path() == cache_home / DB_NAME
    assert cache_path("mock/any") == cache_home / DB_NAME


def test_platform_cache_dir_without_the_env_var(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GAUGE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert cache_dir() == tmp_path / "xdg" / "gauge"


def test_empty_cache_reports_nothing_and_creates_nothing(cache_home: Path) -> None:
    assert cache_size() == []
    assert cache_list_expired() == []
    assert cache_prune() == 0
    assert cache_models() == []
    assert not cache_home.exists()


async def test_sizes_per_model(cache_home: Path) -> None:
    await fill("mock/a", ["one", "two", "three"])
    await fill("mock/b", ["four"])
    sizes = dict(cache_size())
    assert set(sizes) == {"mock/a", "mock/b"}
    assert sizes["mock/a"] > sizes["mock/b"] > 100
    assert cache_size(["mock/b"]) == [("mock/b", sizes["mock/b"])]
    assert [(m, n) for m, n, _ in cache_models()] == [("mock/a", 3), ("mock/b", 1)]
    key = cache_list_keys(cache_home)[0]
    [(hex_key, size)] = cache_size(files=[key])
    assert hex_key == key and 100 < size < sizes["mock/a"]


async def test_clear_one_model_then_everything(cache_home: Path) -> None:
    await fill("mock/a", ["one", "two"])
    await fill("mock/b", ["three"])
    assert cache_clear("mock/a") is True
    assert cache_clear("mock/a") is False
    assert [m for m, _ in cache_size()] == ["mock/b"]
    assert cache_clear() is True
    assert cache_size() == []
    assert cache_path().exists()  # recreated, empty
    await fill("mock/b", ["three"])  # and usable again in this process
    assert [m for m, _ in cache_size()] == ["mock/b"]


async def test_list_expired_and_prune(cache_home: Path) -> None:
    await fill("mock/a", ["one", "two"])
    await fill("mock/b", ["three"])
    await fill("mock/c", ["four"], expiry="never")
    expire(cache_path(), "mock/a")
    expire(cache_path(), "mock/b")
    expired = cache_list_expired()
    assert sorted(e.model for e in expired) == ["mock/a", "mock/a", "mock/b"]
    assert [e.model for e in cache_list_expired(["mock/b"])] == ["mock/b"]
    only_b = cache_list_expired(["mock/b"])
    assert cache_prune(only_b) == 1
    first_a = next(e for e in expired if e.model == "mock/a")
    assert cache_prune([first_a.key]) == 1
    assert cache_prune([first_a.key]) == 0  # already gone
    assert cache_prune() == 1  # the other mock/a entry
    assert cache_list_expired() == []
    assert sorted(m for m, _ in cache_size()) == ["mock/c"]


def test_bad_key_is_a_one_line_error() -> None:
    with pytest.raises(CacheError, match="not a cache key"):
        cache_prune(["abc"])


def test_corrupt_database_management_errors_say_how_to_repair(cache_home: Path) -> None:
    cache_home.mkdir()
    cache_path().write_bytes(b"not a database " * 300)
    with pytest.raises(CacheError, match="gauge cache clear --all"):
        cache_size()
    assert cache_clear() is True
    assert cache_size() == []


def cache_list_keys(home: Path) -> list[str]:
    with sqlite3.connect(home / DB_NAME) as raw:
        return [k.hex() for (k,) in raw.execute("SELECT key FROM entries")]


async def test_a_running_model_keeps_working_across_a_prune_rebuild() -> None:
    model = get_model("mock/a", memoize=False)
    for prompt in ("one", "two", "three"):
        await model.generate(prompt, cache=True)
    expire(cache_path(), "mock/a")
    assert cache_prune() == 3  # all expired: the table is rebuilt under the open worker
    assert (await model.generate("one", cache=True)).metadata == {"cache": "miss"}
    assert (await model.generate("one", cache=True)).metadata == {"cache": "hit"}
    assert [(m, n) for m, n, _ in cache_models()] == [("mock/a", 1)]
