"""Error classification on the OpenAI wire path, exercised through the pipeline's retries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import orjson
import pytest

from gauge.model import GenerateConfig, Model, get_model
from gauge.model.providers._http import HTTPConnectionError, HTTPStatusError
from gauge.model.providers.openai_compat.response import MalformedResponse
from gauge.testing import OpenAIServer


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(validate=True) as server:
        yield server
    assert server.validation_errors == []


@pytest.fixture
async def model(server: OpenAIServer) -> AsyncIterator[Model]:
    async with get_model("openai-api/mock/mock-model", base_url=server.url, api_key="k") as m:
        yield m


def record_sleeps(model: Model) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    model.sleep = sleep
    return waits


def error(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-reset-tokens": "6s"}, 90.0),
    ],
)
async def test_429_is_retried_after_the_servers_wait(
    server: OpenAIServer, model: Model, headers: dict[str, str], expected: float
) -> None:
    waits = record_sleeps(model)
    server.script(
        429, error("Rate limit reached", "requests", "rate_limit_exceeded"), headers=headers
    )
    output = await model.generate("after the wait")
    assert output.completion == "after the wait"
    assert server.count == 2
    assert len(waits) == 1
    assert expected <= waits[0] <= expected * 1.1  # the policy adds up to 10 % jitter


async def test_server_rate_limit_end_to_end(server: OpenAIServer, model: Model) -> None:
    server.rate_limit = 1
    server.retry_after = 0.3
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # really wait: the server's window must pass
        waits.append(seconds)
        await asyncio.sleep(seconds)

    model.sleep = sleep
    first = await model.generate("one")
    second = await model.generate("two")  # 429 within the same second, then retried
    assert (first.completion, second.completion) == ("one", "two")
    assert all(0.3 <= w <= 0.33 for w in waits) and 1 <= len(waits) <= 4


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_fatal_with_the_providers_message(
    server: OpenAIServer, model: Model, status: int
) -> None:
    waits = record_sleeps(model)
    server.script(status, error(f"Invalid 'messages[0]': status {status} from provider"))
    with pytest.raises(HTTPStatusError) as caught:
        await model.generate("x")
    assert caught.value.status == status
    assert f"Invalid 'messages[0]': status {status} from provider" in str(caught.value)
    assert server.count == 1 and waits == []
    assert caught.value.gauge_attempts[0]["kind"] == "fatal"  # type: ignore[attr-defined]


async def test_insufficient_quota_429_is_fatal(server: OpenAIServer, model: Model) -> None:
    server.script(
        429, error("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    )
    with pytest.raises(HTTPStatusError, match="exceeded your current quota"):
        await model.generate("x")
    assert server.count == 1


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
async def test_server_errors_are_transient(server: OpenAIServer, model: Model, status: int) -> None:
    waits = record_sleeps(model)
    server.script(status, error("The server had an error", "server_error"))
    assert (await model.generate("retried")).completion == "retried"
    assert server.count == 2 and len(waits) == 1


async def test_malformed_body_and_200_error_object_are_transient(
    server: OpenAIServer, model: Model
) -> None:
    waits = record_sleeps(model)
    server.script(raw=b'{"id": "chatcmpl-1", "choi')
    server.script(json={"error": {"message": "upstream overloaded", "code": 502}})
    server.script(json={"id": "x", "object": "chat.completion"})
    assert (await model.generate("fine")).completion == "fine"
    assert server.count == 4 and len(waits) == 3


async def test_gives_up_with_history_after_max_retries(server: OpenAIServer, model: Model) -> None:
    record_sleeps(model)
    for _ in range(3):
        server.script(503, error("overloaded", "server_error"))
    with pytest.raises(HTTPStatusError) as caught:
        await model.generate("x", config=GenerateConfig(max_retries=2))
    history = caught.value.gauge_attempts  # type: ignore[attr-defined]
    assert [a["kind"] for a in history] == ["transient"] * 3
    assert server.count == 3


async def test_hang_is_cut_by_attempt_timeout_and_retried(
    server: OpenAIServer, model: Model
) -> None:
    server.hang_rate = 1.0

    async def sleep(seconds: float) -> None:
        server.hang_rate = 0.0  # the retry finds a healthy server

    model.sleep = sleep
    output = await model.generate("patience", config=GenerateConfig(attempt_timeout=0.2))
    assert output.completion == "patience"
    assert server.count == 2


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    async with get_model("openai-api/mock/m", base_url=f"http://127.0.0.1:{port}/v1") as model:
        record_sleeps(model)
        with pytest.raises(HTTPConnectionError) as caught:
            await model.generate("x", config=GenerateConfig(max_retries=2))
    assert [a["kind"] for a in caught.value.gauge_attempts] == ["transient"] * 3  # type: ignore[attr-defined]


async def test_stream_error_before_first_delta_is_retried(
    server: OpenAIServer, model: Model
) -> None:
    record_sleeps(model)
    server.script(429, error("slow down", "requests"), headers={"Retry-After": "1"})
    assert [d async for d in model.stream("a b")] == ["a", " b"]
    assert server.count == 2


async def test_stream_with_n_choices_yields_the_first_choice(
    server: OpenAIServer, model: Model
) -> None:
    deltas = [d async for d in model.stream("a b", config=GenerateConfig(num_choices=2))]
    assert deltas == ["a", " b"]


async def test_stream_400_is_fatal_with_message(server: OpenAIServer, model: Model) -> None:
    server.script(400, error("Unsupported parameter: 'stream'"))
    with pytest.raises(HTTPStatusError, match="Unsupported parameter: 'stream'"):
        _ = [d async for d in model.stream("a")]
    assert server.count == 1


async def test_truncated_stream_raises_after_its_text(server: OpenAIServer, model: Model) -> None:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
    }
    server.script(
        raw=b"data: " + orjson.dumps(chunk) + b"\n\n", headers={"Content-Type": "text/event-stream"}
    )
    received: list[str] = []
    with pytest.raises(MalformedResponse, match="truncated"):
        async for delta in model.stream("Hello"):
            received.append(delta)
    assert received == ["Hel"]


def test_classification_table(model: Model) -> None:
    api = model.api
    assert (
        api.classify_error(HTTPStatusError(429, "x", None, {"retry-after": "3"})).retry_after == 3
    )
    assert api.classify_error(HTTPStatusError(401, "bad key")).kind == "fatal"
    assert api.classify_error(MalformedResponse("cut")).kind == "transient"
    assert api.classify_error(TimeoutError()).kind == "transient"
    assert api.classify_error(ValueError("ours")).kind == "fatal"


async def test_url_credentials_with_an_api_key_is_one_clear_error() -> None:
    from gauge.errors import ConfigError

    model = get_model(
        "openai-api/svc/m", base_url="http://user:pw@127.0.0.1:9/v1", api_key="k", memoize=False
    )
    with pytest.raises(ConfigError, match=r"^the base URL carries user:password credentials"):
        await model.generate("hi", config={"max_retries": 0})
    await model.close()
