"""A TemplateAPI subclass whose `_create_payload` takes exactly lm-eval's keywords.

lm-eval calls `_create_payload(messages, generate=, gen_kwargs=, seed=, eos=)`,
so a subclass written for it may have no **kwargs; gauge must not pass it its
own `pairs=` then (found by scripts/check_lm_eval_parity.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gauge.model import get_model, modelapi
from gauge.model.providers.template import TemplateAPI
from gauge.model.registry import unregister


class CharTokenizer:
    """One token per character (ids = code points); prefix token 0."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    @property
    def prefix_token_id(self) -> int | None:
        return 0


class StrictAPI(TemplateAPI):
    """lm-eval's exact `_create_payload` signature, static parsers taking **kwargs."""

    def _create_payload(  # type: ignore[override]
        self,
        messages: Any,
        generate: bool = False,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int = 1234,
        eos: str | None = None,
    ) -> dict[str, Any]:
        return {"inputs": messages, "seed": seed}

    @staticmethod
    def parse_logprobs(  # type: ignore[override]
        outputs: Any, tokens: Any = None, ctxlens: Any = None, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        # -1 per continuation token: the ids past ctxlen.
        return [
            (-float(len(ids) - c), True) for ids, c in zip(outputs["inputs"], ctxlens, strict=True)
        ]


class PairsAPI(StrictAPI):
    """Names `pairs` explicitly (gauge's extension): it still gets them."""

    def _create_payload(  # type: ignore[override]
        self,
        messages: Any,
        generate: bool = False,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int = 1234,
        eos: str | None = None,
        pairs: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        return {"inputs": messages, "pairs": pairs}


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        bodies.append(body)
        return web.json_response(body)  # echo: the parser reads what was sent

    app = web.Application()
    app.router.add_post("/score", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    modelapi("strict-lmeval")(StrictAPI)
    modelapi("pairs-lmeval")(PairsAPI)
    try:
        yield f"http://127.0.0.1:{port}/score", bodies
    finally:
        unregister("strict-lmeval")
        unregister("pairs-lmeval")
        await runner.cleanup()


async def test_strict_lm_eval_signature_scores(server: tuple[str, list[dict[str, Any]]]) -> None:
    url, bodies = server
    model = get_model("strict-lmeval/m", base_url=url, tokenizer=CharTokenizer(), memoize=False)
    try:
        result = await model.loglikelihood([("Q: 2+3=", " 5"), ("ab", "cde")])
    finally:
        await model.close()
    assert result == [(-2.0, True), (-3.0, True)]  # " 5" is 2 characters, "cde" 3
    assert [b["inputs"] for b in bodies] == [
        [[ord(c) for c in "Q: 2+3= 5"]],
        [[97, 98, 99, 100, 101]],
    ]
    assert all("pairs" not in b for b in bodies)


async def test_a_pairs_parameter_still_receives_the_pairs(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = server
    model = get_model("pairs-lmeval/m", base_url=url, tokenizer=CharTokenizer(), memoize=False)
    try:
        assert await model.loglikelihood([("Answer: ", "yes")]) == [(-4.0, True)]
    finally:
        await model.close()
    assert bodies[0]["pairs"] == [["Answer:", " yes"]]  # whitespace moved, as lm-eval does
