"""The mock OpenAI-compatible server: spec-shaped answers, faults, validation, process mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from gauge.testing import OpenAIServer, validate_request

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hello big world"}]}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    session: aiohttp.ClientSession, url: str, body: object
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(url, data=orjson.dumps(body)) as response:
        return response.status, dict(response.headers), await response.read()


async def test_chat_reply_is_spec_shaped_and_recorded(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(validate=True) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    body = orjson.loads(raw)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hello big world",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 3
    assert body["usage"]["completion_tokens"] == 3
    assert server.count == 1
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].body == CHAT
    assert server.validation_errors == []


async def test_n_max_tokens_stop_and_logprobs(http: aiohttp.ClientSession) -> None:
    body = {**CHAT, "n": 2, "max_tokens": 2, "logprobs": True, "top_logprobs": 3}
    async with OpenAIServer(validate=True) as server:
        _, _, raw = await post(http, f"{server.url}/chat/completions", body)
        _, _, raw_stop = await post(
            http, f"{server.url}/chat/completions", {**CHAT, "stop": [" big"]}
        )
    data = orjson.loads(raw)
    assert [c["message"]["content"] for c in data["choices"]] == ["hello big", "hello big"]
    assert data["choices"][1]["finish_reason"] == "length"
    tokens = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == ["hello", " big"]
    assert len(tokens[1]["top_logprobs"]) == 3
    assert orjson.loads(raw_stop)["choices"][0]["message"]["content"] == "hello"


async def test_tool_choice_required_returns_a_tool_call(http: aiohttp.ClientSession) -> None:
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    body = {**CHAT, "tools": [tool], "tool_choice": "required"}
    async with OpenAIServer(validate=True) as server:
        _, _, raw = await post(http, f"{server.url}/chat/completions", body)
    choice = orjson.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "add", "arguments": "{}"}


async def test_streaming_sends_chunks_usage_and_done(http: aiohttp.ClientSession) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with OpenAIServer(validate=True) as server:
        url = f"{server.url}/chat/completions"
        async with http.post(url, data=orjson.dumps(body)) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            text = (await response.read()).decode()
    events = [e.removeprefix("data: ") for e in text.strip().split("\n\n")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    deltas = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert deltas == "hello big world"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 6
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_completions_and_models_endpoints(http: aiohttp.ClientSession) -> None:
    body = {"model": "mock-model", "prompt": "one two three", "logprobs": 2, "max_tokens": 2}
    async with OpenAIServer(validate=True) as server:
        _, _, raw = await post(http, f"{server.url}/completions", body)
        async with http.get(f"{server.url}/models") as response:
            models = await response.json()
        async with http.get(f"{server.url}/models/org/some-model") as response:
            one = await response.json()
    data = orjson.loads(raw)
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "one two"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["logprobs"]["tokens"] == ["one", " two"]
    assert data["choices"][0]["logprobs"]["top_logprobs"][0] == {"one": -0.1, "one#1": -0.2}
    assert models["object"] == "list" and models["data"][0]["id"] == "mock-model"
    assert one["id"] == "org/some-model"


async def test_validation_rejects_bodies_outside_the_spec(http: aiohttp.ClientSession) -> None:
    bad = {"model": "mock-model", "messages": [{"role": "user", "content": "x"}], "n": "two"}
    async with OpenAIServer(validate=True) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", bad)
    assert status == 400
    assert "n" in orjson.loads(raw)["error"]["message"]
    assert len(server.validation_errors) == 1


def test_validate_request_accepts_nullable_fields_and_rejects_bad_roles() -> None:
    ok = {**CHAT, "temperature": None, "stop": None}
    assert validate_request("/v1/chat/completions", ok) is None
    bad = {"model": "m", "messages": [{"role": "robot", "content": "x"}]}
    assert validate_request("/v1/chat/completions", bad) is not None
    assert validate_request("/v1/completions", {"model": "m", "prompt": [1, 2]}) is None


async def test_rate_limit_answers_429_with_wait_headers(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(rate_limit=2, retry_after=0.25) as server:
        statuses = [
            (await post(http, f"{server.url}/chat/completions", CHAT))[:2] for _ in range(3)
        ]
    assert [s for s, _ in statuses] == [200, 200, 429]
    headers = statuses[2][1]
    assert headers["Retry-After"] == "0.25"
    assert headers["retry-after-ms"] == "250"
    assert headers["x-ratelimit-reset-requests"] == "0.25s"


async def test_tokens_per_minute_limit(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(tokens_per_minute=10) as server:
        first = await post(http, f"{server.url}/chat/completions", CHAT)
        second = await post(http, f"{server.url}/chat/completions", CHAT)
    assert first[0] == 200
    assert second[0] == 429
    assert "tokens per minute" in orjson.loads(second[2])["error"]["message"]


async def test_error_and_malformed_rates(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(error_rate=1.0) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    assert status == 500 and orjson.loads(raw)["error"]["type"] == "server_error"
    async with OpenAIServer(malformed_rate=1.0) as server:
        status, _, raw = await post(http, f"{server.url}/chat/completions", CHAT)
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_hang_rate_never_answers_until_stopped(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(hang_rate=1.0) as server:
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.3):
                await post(http, f"{server.url}/chat/completions", CHAT)
        assert server.count == 1


async def test_latency_delays_answers(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer(latency=0.2) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await post(http, f"{server.url}/chat/completions", CHAT)
        assert loop.time() - started >= 0.2


async def test_scripted_responses_come_first(http: aiohttp.ClientSession) -> None:
    async with OpenAIServer() as server:
        server.script(status=503, json={"error": {"message": "busy"}}, headers={"X-Test": "1"})
        server.script(raw=b"not json")
        first = await post(http, f"{server.url}/chat/completions", CHAT)
        second = await post(http, f"{server.url}/chat/completions", CHAT)
        third = await post(http, f"{server.url}/chat/completions", CHAT)
    assert first[0] == 503 and first[1]["X-Test"] == "1"
    assert second[2] == b"not json"
    assert third[0] == 200


def test_rates_outside_0_1_are_rejected() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        OpenAIServer(error_rate=1.5)


async def test_process_mode_serves_on_announced_port(http: aiohttp.ClientSession) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gauge.testing.openai_server", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        for _ in range(4):
            status, _, raw = await post(http, f"{url}/chat/completions", CHAT)
            assert status == 200
            assert orjson.loads(raw)["choices"][0]["message"]["content"] == "hello big world"
    finally:
        process.terminate()
        exit_code = await asyncio.to_thread(process.wait, 10)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0
