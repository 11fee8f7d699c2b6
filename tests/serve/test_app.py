"""The server with the mock engine, through the official openai SDK (sync and async)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gauge.serve.engines.mock import MockEngine


class Reply:
    def __init__(self, status: int, headers: Any, data: bytes) -> None:
        self.status_code = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.content = data
        self.text = data.decode()

    def json(self) -> Any:
        return orjson.loads(self.content)


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> Reply:
    """One plain HTTP request (urllib), returning errors as replies."""
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return Reply(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as ex:
        return Reply(ex.code, ex.headers, ex.read())


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def sdk(server: Any, key: str = "none") -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
    _clients.append(client)
    return client


def chunks_of(stream: Any) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_unset=True) for c in stream]


def test_chat_non_streaming(serve: Any, check_schema: Any) -> None:
    server = serve()
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="mock-model", messages=[{"role": "user", "content": "one two three"}]
    )
    body = raw.http_response.json()
    check_schema("CreateChatCompletionResponse", body)
    reply = raw.parse()
    assert reply.choices[0].message.content == "one two three"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 3)


def test_chat_n_stop_max_tokens_and_logprobs(serve: Any, check_schema: Any) -> None:
    client = sdk(serve())
    raw = client.chat.completions.with_raw_response.create(
        model="mock-model",
        messages=[{"role": "user", "content": "a b c d e f"}],
        n=3,
        stop=["d"],
        logprobs=True,
        top_logprobs=2,
    )
    check_schema("CreateChatCompletionResponse", raw.http_response.json())
    reply = raw.parse()
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert {c.message.content for c in reply.choices} == {"a b c "}
    lps = reply.choices[0].logprobs
    assert lps is not None and lps.content is not None
    assert [t.token for t in lps.content] == ["a", " b", " c", " "]
    assert len(lps.content[0].top_logprobs) == 2
    short = client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "a b c d"}], max_tokens=2
    )
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("a b", "length")


def test_chat_streaming(serve: Any, check_schema: Any) -> None:
    client = sdk(serve())
    stream = client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "x y z"}],
        stream=True,
        n=2,
        stream_options={"include_usage": True},
    )
    chunks = chunks_of(stream)
    for chunk in chunks:
        check_schema("CreateChatCompletionStreamResponse", chunk)
    texts = {0: "", 1: ""}
    finish = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
            if choice.get("finish_reason"):
                finish[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "x y z", 1: "x y z"}
    assert finish == {0: "stop", 1: "stop"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def test_raw_stream_is_whole_events_ending_with_done(serve: Any) -> None:
    server = serve()
    body = {"model": "mock-model", "prompt": "p q", "stream": True}
    reply = http("POST", f"{server.url}/completions", body)
    assert reply.headers["content-type"].startswith("text/event-stream")
    raw = reply.content
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    for event in events[:-2]:
        assert event.startswith(b"data: ")
        orjson.loads(event[6:])  # each event is one whole JSON document


def test_completions(serve: Any, check_schema: Any) -> None:
    client = sdk(serve())
    raw = client.completions.with_raw_response.create(
        model="mock-model", prompt=["a b", "c d e"], n=2, logprobs=1, max_tokens=2
    )
    body = raw.http_response.json()
    check_schema("CreateCompletionResponse", body)
    reply = raw.parse()
    assert [c.text for c in reply.choices] == ["a b", "a b", "c d", "c d"]
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert [c.finish_reason for c in reply.choices] == ["stop", "stop", "length", "length"]
    lp = reply.choices[2].logprobs
    assert lp is not None
    assert lp.tokens == ["c", " d"] and lp.text_offset == [0, 1]
    assert reply.usage is not None and reply.usage.prompt_tokens == 2 + 2 + 3 + 3 - 5
    ids = client.completions.create(model="mock-model", prompt=[5, 6, 7], echo=True)
    assert ids.choices[0].text == "5 6 75 6 7"


def test_completions_stream(serve: Any, check_schema: Any) -> None:
    client = sdk(serve())
    chunks = chunks_of(
        client.completions.create(model="mock-model", prompt=["a b", "c"], stream=True)
    )
    for chunk in chunks:
        check_schema("CreateCompletionResponse", chunk, stream_completion=True)
    text = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text[choice["index"]] += choice["text"]
    assert text == {0: "a b", 1: "c"}


def test_models(serve: Any, check_schema: Any) -> None:
    server = serve(openai_served_model_name_override="served-name")
    client = sdk(server)
    raw = client.models.with_raw_response.list()
    check_schema("ListModelsResponse", raw.http_response.json())
    assert [m.id for m in raw.parse().data] == ["served-name"]
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_errors_name_the_field(serve: Any, check_schema: Any) -> None:
    client = sdk(serve())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"extra_body": {"top_k": 5}}, "top_k"),
        ({"extra_body": {"use_beam_search": True}}, "use_beam_search"),
        ({"temperature": 7}, "temperature"),
        ({"extra_body": {"bogus": 1}}, "bogus"),
        ({"n": 0}, "n"),
    ]
    for kwargs, field in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="mock-model", messages=[{"role": "user", "content": "x"}], **kwargs
            )
        body = info.value.response.json()
        check_schema("ErrorResponse", body)
        assert body["error"]["param"] == field
        assert field in body["error"]["message"]
    # The neutral value of an unhonoured field is fine: nothing to ignore.
    ok = client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"top_k": -1, "use_beam_search": False, "best_of": 1},
    )
    assert ok.choices[0].message.content == "x"
    bad_json = http("POST", f"{client.base_url}chat/completions", raw=b"{nope")
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]["message"]


def test_auth(serve: Any, check_schema: Any) -> None:
    server = serve(api_key="sekrit")
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(server, "wrong").models.list()
    body = info.value.response.json()
    check_schema("ErrorResponse", body)
    assert body["error"]["code"] == "invalid_api_key"
    assert http("GET", f"{server.root}/metrics").status_code == 401
    assert http("GET", f"{server.root}/health").status_code == 200  # open for probes
    assert [m.id for m in sdk(server, "sekrit").models.list().data] == ["mock-model"]


def test_max_concurrency_answers_429_with_retry_after(serve: Any) -> None:
    server = serve(MockEngine("mock-model", latency=0.5), max_concurrency=2)

    async def one(client: aiohttp.ClientSession) -> Reply:
        body = {"model": "mock-model", "messages": [{"role": "user", "content": "x"}]}
        async with client.post(f"{server.url}/chat/completions", json=body) as reply:
            return Reply(reply.status, reply.headers, await reply.read())

    async def run() -> list[Reply]:
        async with aiohttp.ClientSession() as client:
            return await asyncio.gather(*(one(client) for _ in range(5)))

    replies = asyncio.run(run())
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 429, 429, 429]
    limited = next(r for r in replies if r.status_code == 429)
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_error"


async def test_async_sdk(serve: Any, check_schema: Any) -> None:
    server = serve()
    client = openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0)
    reply = await client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "hello there"}]
    )
    assert reply.choices[0].message.content == "hello there"
    stream = await client.completions.create(model="mock-model", prompt="u v w", stream=True)
    text = ""
    async for chunk in stream:
        check_schema(
            "CreateCompletionResponse", chunk.model_dump(mode="json", exclude_unset=True), True
        )
        text += chunk.choices[0].text
    assert text == "u v w"
    await client.close()


def test_health_and_metrics(serve: Any) -> None:
    server = serve()
    sdk(server).chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "a b"}]
    )
    with urllib.request.urlopen(f"{server.root}/health") as reply:
        health = orjson.loads(reply.read())
    assert health["status"] == "ready" and health["engine"] == "mock"
    assert health["phases"]["load"] >= 0 and health["phases"]["warmup"] >= 0
    text = http("GET", f"{server.root}/metrics").text
    assert 'gauge_requests_total{route="/v1/chat/completions",status="200"} 1' in text
    assert "gauge_generation_tokens_total 2" in text
    assert "gauge_time_to_first_token_seconds_count 1" in text
    assert "gauge_queue_time_seconds_count 1" in text


class SlowLoading(MockEngine):
    async def load(self) -> None:
        await asyncio.sleep(0.6)


def test_loading_state_is_503_then_ready(serve: Any) -> None:
    server = serve(SlowLoading("mock-model"), wait_ready=False)
    health = http("GET", f"{server.root}/health")
    assert health.status_code == 503 and health.json()["status"] == "loading"
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "x"}]}
    early = http("POST", f"{server.url}/chat/completions", body)
    assert early.status_code == 503 and early.headers["retry-after"] == "1"
    assert "loading" in early.json()["error"]["message"]
    deadline = time.monotonic() + 10
    while http("GET", f"{server.root}/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ready = http("GET", f"{server.root}/health").json()
    assert ready["status"] == "ready" and ready["phases"]["load"] >= 0.5
    assert http("POST", f"{server.url}/chat/completions", body).status_code == 200
