"""ServerTokenizer's prefix token when the server adds no bos: vLLM's GET /tokenizer_info.

lm-eval's remote tokenizer starts an empty context (and each perplexity window)
from bos, else eos, as named by /tokenizer_info; gauge follows the same rule
when /tokenize of an empty prompt shows no bos.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tokenizers
from aiohttp import web

from gauge.model.providers._http import HttpClient
from gauge.model.tokenization import ServerTokenizer

TINY = Path(__file__).resolve().parents[2] / "src" / "gauge" / "assets" / "gauge-tiny"
TOK = tokenizers.Tokenizer.from_file(str(TINY / "tokenizer.json"))


class Fake:
    def __init__(self) -> None:
        self.info: dict[str, Any] | None = None
        self.add_bos = False
        self.paths: list[str] = []


async def start(fake: Fake) -> tuple[web.AppRunner, str]:
    async def tokenize(request: web.Request) -> web.Response:
        fake.paths.append("/tokenize")
        body = await request.json()
        ids = list(TOK.encode(body["prompt"], add_special_tokens=False).ids)
        if fake.add_bos and body.get("add_special_tokens", True):
            ids = [1, *ids]
        return web.json_response({"count": len(ids), "max_model_len": 512, "tokens": ids})

    async def tokenizer_info(request: web.Request) -> web.Response:
        fake.paths.append("/tokenizer_info")
        if fake.info is None:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(fake.info)

    app = web.Application()
    app.router.add_post("/tokenize", tokenize)
    app.router.add_get("/tokenizer_info", tokenizer_info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def served() -> AsyncIterator[tuple[Fake, str]]:
    fake = Fake()
    runner, url = await start(fake)
    yield fake, url
    await runner.cleanup()


async def prefix_of(url: str) -> int | None:
    client = HttpClient(url)
    try:
        tokenizer = ServerTokenizer(client, url, "m")
        assert await tokenizer.available()
        return tokenizer.prefix_token_id
    finally:
        await client.close()


async def test_bos_named_by_tokenizer_info(served: tuple[Fake, str]) -> None:
    fake, url = served
    fake.info = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "tokenizer_class": "X"}
    assert await prefix_of(url) == 1  # gauge-tiny's <|bos|>


async def test_eos_when_there_is_no_bos_as_added_token_dict(served: tuple[Fake, str]) -> None:
    fake, url = served
    fake.info = {"bos_token": None, "eos_token": {"content": "<|eos|>", "special": True}}
    assert await prefix_of(url) == 2  # gauge-tiny's <|eos|>


async def test_no_tokenizer_info_endpoint_leaves_the_prefix_unknown(
    served: tuple[Fake, str],
) -> None:
    fake, url = served
    assert await prefix_of(url) is None
    assert fake.paths == ["/tokenize", "/tokenizer_info"]


async def test_a_bos_the_server_adds_wins_without_asking_tokenizer_info(
    served: tuple[Fake, str],
) -> None:
    fake, url = served
    fake.add_bos = True
    fake.info = {"bos_token": None, "eos_token": "<|eos|>"}
    assert await prefix_of(url) == 1
    assert "/tokenizer_info" not in fake.paths
