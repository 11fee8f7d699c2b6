"""The shared response cache in Redis: a real redis-server per test (127.0.0.1, a free
port, a temp dir, no persistence), stopped after. No fake Redis."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge.cli.main import main
from gauge.dataset import Sample
from gauge.errors import ConfigError
from gauge.evaluation.runner import eval
from gauge.evaluation.task import Task
from gauge.model.cache import CachePolicy, cache_clear, cache_size, redis_tier
from gauge.model.cache.redis_store import PREFIX, decode
from gauge.model.cache.store import Store
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.output import ModelOutput
from gauge.scorer import includes
from gauge.solver import generate
from gauge.testing import OpenAIServer
from gauge.testing.redis_server import RedisMissing, RedisServer, free_port

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    try:
        server = RedisServer(directory)
    except RedisMissing as ex:
        pytest.fail(str(ex), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def local_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "local"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    monkeypatch.setattr(redis_tier, "_warned", False)
    return path


@pytest.fixture
def shared(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """The shared cache on (Redis only): GAUGE_CACHE_URL alone."""
    monkeypatch.setenv("GAUGE_CACHE_URL", redis_server.url)
    return redis_server


@pytest.fixture
def near(shared: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """The shared cache with the local file as a near tier."""
    monkeypatch.setenv("GAUGE_SHARED_CACHE", "near")
    return shared


def mock(**args: Any) -> Model:
    return get_model("mock/cache", memoize=False, **args)


def calls(model: Model) -> int:
    return model.api.calls  # type: ignore[attr-defined]


def entries(server: RedisServer) -> dict[bytes, bytes]:
    client = server.client()
    try:
        return {name: client.get(name) for name in client.scan_iter(match=PREFIX + "*")}
    finally:
        client.close()


def local_count(directory: Path) -> int:
    store = Store(directory / "responses.sqlite3", create=False)
    try:
        return store.count() if store.exists else 0
    finally:
        store.close()


async def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def gauge(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as ex:
        code = int(ex.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


async def test_entries_live_in_redis_with_the_stores_value_and_no_local_file(
    shared: RedisServer, local_dir: Path
) -> None:
    model = mock()
    first = await model.generate("What is 2+2?", cache=True)
    assert first.metadata == {"cache": "miss"}
    hit = await model.generate("What is 2+2?", cache=True)
    assert hit.metadata == {"cache": "hit"} and hit.completion == first.completion
    assert calls(model) == 1
    [(name, raw)] = entries(shared).items()
    assert len(name) == len(PREFIX) + 64
    header, value = raw.split(b"\n", 1)
    head = orjson.loads(header)
    assert head["model"] == "mock/cache" and head["expires"] - head["created"] == 7 * 86400
    assert set(head["fingerprint"]) >= {"provider", "model", "messages"}
    stored = ModelOutput.model_validate_json(value)
    stored.metadata = hit.metadata
    assert stored == hit  # the same JSON the SQLite store keeps
    assert not (local_dir / "responses.sqlite3").exists()


async def test_the_ttl_is_the_entrys_expiry(shared: RedisServer) -> None:
    model = mock()
    await model.generate("an hour", cache="1h")
    await model.generate("forever", cache=CachePolicy(expiry=None))
    client = shared.client()
    try:
        ttls = {}
        for name, raw in entries(shared).items():
            entry = decode(raw)
            assert entry is not None
            ttls[orjson.loads(entry.value)["choices"][0]["message"]["content"]] = (
                client.pttl(name),
                entry,
            )
    finally:
        client.close()
    pttl, entry = ttls["an hour"]
    assert entry.expires is not None and entry.expires - entry.created == 3600
    assert 3600_000 - 5_000 < pttl <= 3600_000
    assert abs(pttl / 1000 - (entry.expires - time.time())) < 2
    assert ttls["forever"][0] == -1 and ttls["forever"][1].expires is None


def test_two_processes_share_hits(shared: RedisServer, tmp_path: Path) -> None:
    child = (
        "import asyncio\n"
        "from gauge.model.factory import get_model\n"
        "out = asyncio.run(get_model('mock/cache').generate('from another process', cache=True))\n"
        "print(out.metadata['cache'])\n"
    )
    env = {
        "GAUGE_CACHE_URL": shared.url,
        "GAUGE_CACHE_DIR": str(tmp_path / "child"),
        "PYTHONPATH": str(SRC),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "miss"

    async def parent() -> tuple[ModelOutput, int]:
        model = mock()
        return await model.generate("from another process", cache=True), calls(model)

    output, made = asyncio.run(parent())
    assert output.metadata == {"cache": "hit"} and made == 0


async def test_near_tier_stores_both_and_copies_redis_hits(
    near: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two "machines": separate local files, one Redis.
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "a"))
    a = mock()
    assert (await a.generate("shared prompt", cache=True)).metadata == {"cache": "miss"}
    assert local_count(tmp_path / "a") == 1 and len(entries(near)) == 1

    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "b"))
    b = mock()
    assert (await b.generate("shared prompt", cache=True)).metadata == {"cache": "hit"}
    assert calls(b) == 0
    await wait_for(lambda: local_count(tmp_path / "b") == 1)  # copied to the near tier
    near.client().flushdb()
    hit = await b.generate("shared prompt", cache=True)  # from the near tier alone
    assert hit.metadata == {"cache": "hit"} and calls(b) == 0


async def test_a_stale_near_entry_gives_way_to_a_newer_one_in_redis(
    near: RedisServer, local_dir: Path
) -> None:
    model = mock()
    await model.generate("refreshed elsewhere", cache=True)
    with sqlite3.connect(local_dir / "responses.sqlite3") as raw:
        raw.execute("UPDATE entries SET created = created - 7200")
    output = await model.generate("refreshed elsewhere", cache="1h")
    assert output.metadata == {"cache": "hit"} and calls(model) == 1

    def copied() -> bool:
        with sqlite3.connect(local_dir / "responses.sqlite3") as raw:
            [(created,)] = raw.execute("SELECT created FROM entries").fetchall()
        return bool(time.time() - created < 60)

    await wait_for(copied)


async def test_one_loop_turns_lookups_share_one_mget(shared: RedisServer) -> None:
    model = mock()
    prompts = [f"question {i}" for i in range(40)]
    await asyncio.gather(*(model.generate(p, cache=True) for p in prompts))
    client = shared.client()
    try:
        client.config_resetstat()
        hits = await asyncio.gather(*(model.generate(p, cache=True) for p in prompts))
        stats = client.info("commandstats")
    finally:
        client.close()
    assert all(h.metadata == {"cache": "hit"} for h in hits) and calls(model) == 40
    assert stats["cmdstat_mget"]["calls"] == 1
    assert "cmdstat_set" not in stats


async def test_one_loop_turns_stores_share_one_pipeline(
    shared: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    send = redis_tier._Link._store

    async def counted(link: Any, batch: list[Any]) -> None:
        batches.append(len(batch))
        await send(link, batch)

    monkeypatch.setattr(redis_tier._Link, "_store", counted)
    model = mock()
    await asyncio.gather(*(model.generate(f"store {i}", cache=True) for i in range(40)))
    assert batches == [40] and len(entries(shared)) == 40


async def test_the_shared_state_url_serves_when_no_cache_url_is_set(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, local_dir: Path
) -> None:
    monkeypatch.setenv("GAUGE_SHARED_STATE", redis_server.url)
    monkeypatch.setenv("GAUGE_SHARED_CACHE", "redis")
    model = mock()
    await model.generate("via the shared state URL", cache=True)
    assert (await model.generate("via the shared state URL", cache=True)).metadata == {
        "cache": "hit"
    }
    assert len(entries(redis_server)) == 1 and not (local_dir / "responses.sqlite3").exists()


async def test_scoring_goes_through_redis(shared: RedisServer) -> None:
    model = mock()
    pairs = [("The answer is", f" {i}") for i in range(30)]
    first = await model.loglikelihood(pairs, cache=True)
    assert len(entries(shared)) == 30
    other = mock()
    assert await other.loglikelihood(pairs[::-1], cache=True) == first[::-1]
    assert calls(other) == 0


def numbers(n: int) -> Task:
    samples = [Sample(input=f"n{i}", target=f"n{i}", id=i) for i in range(n)]
    return Task(samples, solver=[generate()], scorer=includes(), name="numbers")


@pytest.mark.parametrize("mode", ["redis", "near"])
def test_redis_down_at_start_one_warning_and_the_run_completes(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    local_dir: Path,
    mode: str,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setenv("GAUGE_SHARED_CACHE", mode)
    monkeypatch.setenv("GAUGE_CACHE_URL", url)
    model = mock()
    with caplog.at_level(logging.WARNING, logger="gauge.cache"):
        [result] = eval(numbers(12), model, cache=True, log_dir=tmp_path / "logs", display=False)
        [again] = eval(numbers(12), model, cache=True, log_dir=tmp_path / "logs", display=False)
    assert (result.status, result.completed, result.errors) == ("success", 12, 0)
    assert (again.status, again.completed, again.errors) == ("success", 12, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "gauge.cache"]
    assert len(warnings) == 1 and url in warnings[0] and "\n" not in warnings[0]
    if mode == "near":  # the local file went on working: the second run hit it
        assert "the local cache only" in warnings[0] and calls(model) == 12
    else:
        assert "no response cache" in warnings[0] and calls(model) == 24


async def test_redis_going_away_and_back(
    shared: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(redis_tier, "RETRY_S", 0.05)
    model = mock()
    await model.generate("kept", cache=True)
    shared.stop()
    with caplog.at_level(logging.INFO, logger="gauge.cache"):
        for _ in range(3):
            assert (await model.generate("kept", cache=True)).metadata == {"cache": "miss"}
        shared.start()  # empty again: no persistence
        await asyncio.sleep(0.1)
        await model.generate("kept", cache=True)
        assert (await model.generate("kept", cache=True)).metadata == {"cache": "hit"}
    messages = [r.getMessage() for r in caplog.records if r.name == "gauge.cache"]
    assert len([m for m in messages if "unreachable" in m]) == 1
    assert any("is back" in m for m in messages)


async def test_secrets_never_reach_redis(shared: RedisServer) -> None:
    canary = "sk-canary-4f1c9e77d2"
    async with OpenAIServer() as server:
        model = get_model("openai-api/mock/m", base_url=server.url, api_key=canary, memoize=False)
        config = GenerateConfig(
            extra_headers={"Authorization": f"Bearer {canary}", "X-Api-Key": canary}
        )
        first = await model.generate("canary prompt", cache=True, config=config)
        assert first.metadata == {"cache": "miss"}
        assert (await model.generate("canary prompt", cache=True, config=config)).metadata == {
            "cache": "hit"
        }
        assert len(server.requests) == 1
        await model.close()
    client = shared.client()
    try:
        names = list(client.scan_iter(count=1000))
        # Every gauge key is a string; DUMP (compressed) only for anything else.
        values = [
            (client.get(n) if client.type(n) == b"string" else client.dump(n)) or b"" for n in names
        ]
    finally:
        client.close()
    assert names and any(b"canary prompt" in v for v in values)
    for blob in [*names, *values]:
        assert canary.encode() not in blob


def test_gauge_cache_commands_act_on_redis(
    shared: RedisServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"store: Redis at {shared.url} ({PREFIX}*)"
    assert gauge(capsys, "cache", "list")[1] == f"the cache is empty\n{store}\n"
    for name, prompts in (("mock/a", ["one", "two"]), ("mock/b", ["three"])):
        sync = get_model(name, memoize=False).sync()
        for prompt in prompts:
            sync.generate(prompt, cache=True)
    assert gauge(capsys, "cache", "path")[1] == f"Redis at {shared.url} ({PREFIX}*)\n"
    code, out, _ = gauge(capsys, "cache", "list")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == store
    assert lines[0].startswith("mock/a  2 entries  ") and lines[1].startswith("mock/b  1 entries")
    code, out, _ = gauge(capsys, "cache", "size", "--model", "mock/b")
    assert out.splitlines()[0].startswith("mock/b  ") and out.splitlines()[-1] == store
    [(model, size)] = cache_size(["mock/b"])
    assert model == "mock/b" and size == sum(
        len(n) + len(v) for n, v in entries(shared).items() if b'"model":"mock/b"' in v
    )

    request = tmp_path / "hit.yaml"
    request.write_text("model: mock/a\ninput: one\n")
    code, out, _ = gauge(capsys, "cache", "explain", str(request))
    assert "HIT: an entry with this key is stored and fresh" in out and out.endswith(store + "\n")
    request.write_text("model: mock/a\ninput: one\nconfig: {seed: 3}\n")
    out = gauge(capsys, "cache", "explain", str(request))[1]
    assert "9 of 10 components equal, 2 entries for this model" in out

    # An entry past its expiry that Redis has not deleted (written without a TTL).
    client = shared.client()
    [name] = [n for n, v in entries(shared).items() if b'"model":"mock/b"' in v]
    raw = client.get(name)
    header, value = raw.split(b"\n", 1)
    head = orjson.loads(header)
    head["expires"] = time.time() - 10
    client.set(name, orjson.dumps(head) + b"\n" + value)
    client.set("other:key", b"not gauge's")
    code, out, _ = gauge(capsys, "cache", "list", "--expired")
    assert out.splitlines()[0].split()[1] == "mock/b" and out.splitlines()[1] == "1 expired entry"
    assert gauge(capsys, "cache", "clear", "--expired")[1] == (
        f"pruned 1 expired entry in Redis at {shared.url} ({PREFIX}*)\n"
    )
    assert gauge(capsys, "cache", "prune")[1].startswith("pruned 0 expired entries in Redis at ")
    assert gauge(capsys, "cache", "clear", "--model", "mock/a")[1] == (
        f"cleared mock/a in Redis at {shared.url} ({PREFIX}*)\n"
    )
    assert gauge(capsys, "cache", "list")[1] == f"the cache is empty\n{store}\n"
    sync = get_model("mock/c", memoize=False).sync()
    sync.generate("four", cache=True)
    assert gauge(capsys, "cache", "clear", "--all")[1].startswith("cleared the whole cache in ")
    assert entries(shared) == {} and client.get("other:key") == b"not gauge's"
    client.close()


def test_near_clear_also_clears_this_machines_file(near: RedisServer, local_dir: Path) -> None:
    get_model("mock/a", memoize=False).sync().generate("one", cache=True)
    assert local_count(local_dir) == 1 and len(entries(near)) == 1
    assert cache_clear("mock/a") is True
    assert local_count(local_dir) == 0 and entries(near) == {}


def test_management_with_redis_down_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAUGE_CACHE_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    code, out, err = gauge(capsys, "cache", "list")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("error: shared cache at redis://:***@127.0.0.1:")
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GAUGE_SHARED_CACHE": "yes"}, "GAUGE_SHARED_CACHE='yes' is not valid"),
        ({"GAUGE_SHARED_CACHE": "redis"}, "GAUGE_SHARED_CACHE=redis needs a Redis URL"),
        ({"GAUGE_CACHE_URL": "http://x"}, "must start with redis://"),
    ],
)
def test_bad_settings_are_one_line_config_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = gauge(capsys, "cache", "list")
    assert code == 2 and message in err and err.count("\n") == 1


def test_off_is_the_local_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], local_dir: Path
) -> None:
    monkeypatch.setenv("GAUGE_SHARED_CACHE", "off")
    monkeypatch.setenv("GAUGE_CACHE_URL", "redis://127.0.0.1:1/0")
    get_model("mock/a", memoize=False).sync().generate("one", cache=True)
    assert local_count(local_dir) == 1
    assert gauge(capsys, "cache", "path")[1] == f"{local_dir / 'responses.sqlite3'}\n"


def test_a_bad_setting_stops_an_eval_before_any_sample(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GAUGE_SHARED_CACHE", "yes")
    model = mock()
    with pytest.raises(ConfigError, match="GAUGE_SHARED_CACHE='yes' is not valid"):
        eval(numbers(3), model, cache=True, log_dir=tmp_path / "logs", display=False)
    assert calls(model) == 0
