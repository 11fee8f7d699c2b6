"""A fake "myapi" server for examples/custom_api.py: a made-up JSON API that does sums.

    POST /generate  {"model", "inputs": [prompt, ...], "max_new_tokens": n, "stop": [...],
                     "temperature"?: t, "seed"?: s}
                    -> {"results": [{"text": "The answer is 5."}, ...]}
    POST /score     {"model", "pairs": [{"context": c, "continuation": x}, ...]}
                    -> {"scores": [{"logprob": -0.25, "greedy": true}, ...]}

Its "model" knows one thing: for a prompt containing "A+B", the answer is A+B.
A continuation that is that number scores -0.25 (and is greedy); anything else
scores -(2 + its length). Bodies are checked strictly: a missing or mistyped
field is an HTTP 400 naming it. With --api-key, requests must send it as
`X-API-Key` (else 401).

    python examples/custom_api_server.py --port 8765 --api-key secret
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from aiohttp import web

SUM = re.compile(r"(-?\d+)\s*\+\s*(-?\d+)")
REQUESTS = web.AppKey("requests", list)
"""`app[REQUESTS]`: every accepted body, in arrival order (with its "path")."""


class BadRequest(Exception):
    """A payload field is missing or has the wrong type."""


def answer(prompt: str) -> str | None:
    """The sum asked for in `prompt`, as text, or None when it asks for none."""
    match = SUM.search(prompt)
    return None if match is None else str(int(match[1]) + int(match[2]))


def complete(prompt: str, max_new_tokens: int, stop: list[str]) -> str:
    """The fake model's completion: whitespace-separated words count as tokens."""
    value = answer(prompt)
    text = "I do not know." if value is None else f"The answer is {value}."
    for sequence in stop:
        if sequence and sequence in text:
            text = text[: text.index(sequence)]
    return " ".join(text.split(" ")[:max_new_tokens])


def score(context: str, continuation: str) -> dict[str, Any]:
    """The fake model's loglikelihood of `continuation` after `context`."""
    if continuation.strip() and continuation.strip() == answer(context):
        return {"logprob": -0.25, "greedy": True}
    return {"logprob": -(2.0 + len(continuation.strip())), "greedy": False}


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise BadRequest(f"missing field {name!r}")
    if not isinstance(body[name], kind) or isinstance(body[name], bool):
        raise BadRequest(f"field {name!r} has the wrong type: {type(body[name]).__name__}")
    return body[name]


def make_app(api_key: str | None = None) -> web.Application:
    """The aiohttp app; `app[REQUESTS]` records every accepted body, in arrival order."""
    requests: list[dict[str, Any]] = []

    async def read(request: web.Request) -> dict[str, Any]:
        if api_key is not None and request.headers.get("X-API-Key") != api_key:
            raise web.HTTPUnauthorized(
                text='{"error": "bad or missing X-API-Key"}', content_type="application/json"
            )
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        _field(body, "model", str)
        return body

    async def generate(request: web.Request) -> web.Response:
        try:
            body = await read(request)
            inputs = _field(body, "inputs", list)
            if not inputs or not all(isinstance(p, str) for p in inputs):
                raise BadRequest("field 'inputs' must be a non-empty list of strings")
            max_new = _field(body, "max_new_tokens", int)
            stop = _field(body, "stop", list)
            if "temperature" in body:
                _field(body, "temperature", (int, float))
        except BadRequest as ex:
            return web.json_response({"error": str(ex)}, status=400)
        requests.append({"path": "/generate", **body})
        return web.json_response(
            {"results": [{"text": complete(p, max_new, stop)} for p in inputs]}
        )

    async def score_pairs(request: web.Request) -> web.Response:
        try:
            body = await read(request)
            pairs = _field(body, "pairs", list)
            if not pairs or not all(
                isinstance(p, dict)
                and isinstance(p.get("context"), str)
                and isinstance(p.get("continuation"), str)
                for p in pairs
            ):
                raise BadRequest("field 'pairs' must list {context, continuation} strings")
        except BadRequest as ex:
            return web.json_response({"error": str(ex)}, status=400)
        requests.append({"path": "/score", **body})
        return web.json_response(
            {"scores": [score(p["context"], p["continuation"]) for p in pairs]}
        )

    app = web.Application()
    app[REQUESTS] = requests
    app.router.add_post("/generate", generate)
    app.router.add_post("/score", score_pairs)
    return app


def main() -> None:
    """Serve the fake API until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="require this X-API-Key header")
    args = parser.parse_args()
    web.run_app(make_app(args.api_key), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
