"""cache explain: hit or miss for a request or a journal sample, and the nearest entry."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from gauge.errors import ConfigError
from gauge.model import registry
from gauge.model.api import ModelAPI
from gauge.model.cache import cache_explain
from gauge.model.cache.explain import explain_log, journal_requests, load_request
from gauge.model.cache.policy import cache_epoch
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.messages import ChatMessageSystem, ChatMessageUser
from gauge.model.output import ModelOutput


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(path))
    return path


MESSAGES = [
    {"role": "system", "content": "Answer with a number."},
    {"role": "user", "content": "What is 6*7?"},
]


async def run(config: GenerateConfig | None = None, epoch: int = 0, model: str = "mock/m") -> None:
    token = cache_epoch.set(epoch)
    try:
        m = get_model(model, memoize=False)
        messages = [
            ChatMessageSystem(content=MESSAGES[0]["content"]),
            ChatMessageUser(content=MESSAGES[1]["content"]),
        ]
        await m.generate(messages, config=config, cache=True)
    finally:
        cache_epoch.reset(token)


async def test_a_stored_request_hits() -> None:
    await run(GenerateConfig(temperature=0.2))
    result = cache_explain({"model": "mock/m", "input": MESSAGES, "config": {"temperature": 0.2}})
    assert result.hit and result.model == "mock/m" and result.epoch == 0
    assert result.created is not None and len(result.key) == 64


async def test_a_miss_names_the_nearest_entry_and_what_differs() -> None:
    await run(GenerateConfig(temperature=0.2))
    await run(GenerateConfig(temperature=0.2, max_tokens=50))
    await run(GenerateConfig(temperature=0.2), model="mock/other")
    result = cache_explain(
        {"model": "mock/m", "input": MESSAGES, "config": {"temperature": 0.7}, "epoch": 0}
    )
    assert not result.hit and result.reason == "no entry has this key"
    assert result.entries == 2  # only mock/m's entries are candidates
    nearest = result.nearest
    assert nearest is not None
    assert nearest.differences == ["config.temperature: 0.7 in the request, 0.2 in the entry"]
    assert nearest.equal == nearest.total - 1


async def test_epoch_and_message_differences_are_reported() -> None:
    await run(epoch=1)
    other = [MESSAGES[0], {"role": "user", "content": "What is 6*8?"}]
    result = cache_explain({"model": "mock/m", "input": other, "epoch": 2})
    assert result.nearest is not None
    assert result.nearest.differences == [
        "epoch: 2 in the request, 1 in the entry",
        'messages: message 2 differs: {"content":"What is 6*8?","role":"user"} in the request, '
        '{"content":"What is 6*7?","role":"user"} in the entry',
    ]


async def test_stale_entry_is_a_miss_with_its_age(cache_home: Path) -> None:
    await run()
    with sqlite3.connect(cache_home / "responses.sqlite3") as raw:
        raw.execute("UPDATE entries SET created = created - 3 * 86400")
    request = {"model": "mock/m", "input": MESSAGES, "cache": "1D"}
    result = cache_explain(request)
    assert not result.hit
    assert "3.0 days old, older than the expiry 1D" in result.reason
    assert cache_explain({**request, "cache": "1W"}).hit


def test_no_entries_for_the_model() -> None:
    result = cache_explain({"model": "mock/nothing", "input": "hi"})
    assert not result.hit and result.nearest is None
    assert result.reason == "no entry has this key, and no entry is stored for mock/nothing"


class KeyedAPI(ModelAPI):
    needs_api_key = True
    honours: ClassVar[frozenset[str]] = frozenset({"temperature"})

    async def generate(self, *args: Any) -> ModelOutput:
        return ModelOutput.from_content("keyed", "ok")


@pytest.fixture
def keyed() -> Iterator[None]:
    registry.modelapi("keyed")(KeyedAPI)
    yield
    registry.unregister("keyed")


async def test_explain_needs_no_api_key(keyed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYED_API_KEY", "sk-real")
    model = get_model("keyed/x", memoize=False)
    await model.generate("hello", cache=True)
    monkeypatch.delenv("KEYED_API_KEY")
    assert cache_explain({"model": "keyed/x", "input": "hello"}).hit


def test_journal_sample_lines(tmp_path: Path) -> None:
    get_model("mock/m").sync().generate("What is 6*7?", cache=True)
    journal = tmp_path / "run.jsonl"
    lines = [
        {"type": "header", "task": "arith"},
        {"id": 1, "epoch": 0, "model": "mock/m", "input": "What is 6*7?", "config": {}},
        {"id": 1, "epoch": 1, "model": "mock/m", "input": "What is 6*7?", "config": {}},
        {"id": "b", "epoch": 0, "model": "mock/m", "input": [MESSAGES[1]], "config": {}},
    ]
    journal.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    both = explain_log(journal, "1")
    assert [(r.sample, r.epoch, r.hit) for r in both] == [("1", 0, True), ("1", 1, False)]
    assert [r.hit for r in explain_log(journal, "1", epoch=1)] == [False]
    assert explain_log(journal, "b")[0].hit  # messages or a prompt: the same request
    with pytest.raises(ConfigError, match="no line for sample '9'"):
        explain_log(journal, "9")


def test_bad_requests_are_one_line_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs 'model"):
        cache_explain({"input": "x"})
    with pytest.raises(ConfigError, match="needs 'input'"):
        cache_explain({"model": "mock/m"})
    with pytest.raises(ConfigError, match="temperature"):
        cache_explain({"model": "mock/m", "input": "x", "config": {"temperature": 9}})
    with pytest.raises(ConfigError, match="request: 0: Input tag 'robot'"):
        cache_explain({"model": "mock/m", "input": [{"role": "robot", "content": "x"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid JSON/YAML"):
        load_request(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_request(tmp_path / "missing.json")
    not_jsonl = tmp_path / "j.jsonl"
    not_jsonl.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(ConfigError, match=r"j\.jsonl:2: not a JSON line"):
        explain_log(not_jsonl, "1")


async def test_a_real_eval_journal_sample_hits(tmp_path: Path) -> None:
    from gauge import Task, eval_async
    from gauge.dataset import Sample
    from gauge.scorer import match

    task = Task([Sample(input=f"{i}", target=str(i), id=f"s{i}") for i in range(3)], scorer=match())
    config = GenerateConfig(cache=True, temperature=0.3)
    [result] = await eval_async(
        task, "mock/journal", config=config, epochs=2, log_dir=tmp_path, display=False
    )
    journal = Path(result.journal)
    # The runner numbers epochs from 1 and sets cache_epoch to the same number.
    assert sorted((r.epoch, r.hit) for r in explain_log(journal, "s1")) == [(1, True), (2, True)]
    assert [r.hit for r in explain_log(journal, "s1", epoch=2)] == [True]
    # The header's config counts: without it the temperature would differ.
    sample = next(line for line in journal_requests(journal) if line["id"] == "s2")
    assert sample["config"]["temperature"] == 0.3  # from the header
    bare = cache_explain({**sample, "config": {"cache": True}})
    assert not bare.hit and bare.nearest is not None
    assert bare.nearest.differences == [
        "config.temperature: absent in the request, 0.3 in the entry"
    ]
