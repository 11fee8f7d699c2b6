"""Custom ids: deterministic per request, distinct per occurrence and epoch."""

from __future__ import annotations

from gauge.model.batch.ids import IdMaker
from gauge.model.cache.policy import CachePolicy, cache_epoch
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessageUser
from gauge.model.providers.openai_compat.services import OpenAIAPI
from gauge.model.request import ModelRequest


def api(model: str = "gpt-4o-mini") -> OpenAIAPI:
    return OpenAIAPI(model, base_url="http://127.0.0.1:9/v1", api_key="sk-test")


def request(text: str, **config: object) -> ModelRequest:
    return ModelRequest([ChatMessageUser(content=text)], [], "auto", GenerateConfig(**config))


def test_same_request_same_id_in_a_new_run() -> None:
    first, second = IdMaker(api()), IdMaker(api())
    ids = [first.next_id(request(t)) for t in ("a", "b")]
    assert ids == [second.next_id(request(t)) for t in ("a", "b")]
    assert all(len(i) == 34 and i.endswith("-0") for i in ids)
    assert ids[0] != ids[1]


def test_identical_requests_are_counted() -> None:
    maker = IdMaker(api())
    ids = [maker.next_id(request("same")) for _ in range(3)]
    assert [i.rsplit("-", 1)[1] for i in ids] == ["0", "1", "2"]
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 1


def test_epoch_model_and_settings_change_the_id() -> None:
    maker = IdMaker(api())
    base = maker.digest(request("q"))
    token = cache_epoch.set(2)
    try:
        assert maker.digest(request("q")) != base
    finally:
        cache_epoch.reset(token)
    assert maker.digest(request("q", temperature=0.5)) != base
    assert IdMaker(api("gpt-4o")).digest(request("q")) != base


def test_epoch_counts_even_where_the_cache_shares_epochs() -> None:
    maker = IdMaker(api())
    shared = CachePolicy(per_epoch=False)
    one = maker.digest(request("q", cache=shared))
    token = cache_epoch.set(1)
    try:
        assert maker.digest(request("q", cache=shared)) != one
    finally:
        cache_epoch.reset(token)


def test_pipeline_settings_do_not_change_the_id() -> None:
    maker = IdMaker(api())
    base = maker.digest(request("q"))
    assert maker.digest(request("q", batch=True, timeout=5, max_retries=2)) == base
