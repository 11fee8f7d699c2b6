"""Client CPU per call for anthropic/, google/ and mistral/ against zero-latency fake servers.

One run, concurrency C (default 64): calls/s and client CPU per call for
  raw        a bare aiohttp POST + orjson parse of a Messages-sized body (the floor),
  anthropic  Model.generate on anthropic/<model> (full pipeline + translation),
  google     Model.generate on google/<model> (Gemini API key),
  vertex     Model.generate on google/<model> with -M project/location/credentials
             (a generated service-account key; the token is fetched once and cached),
  mistral    Model.generate on mistral/<model>,
  anthropic stream  Model.stream on anthropic/<model> (SSE, 3 text deltas).
The servers run in a child process, so the process CPU measured here is the client's.

    .venv/bin/python bench/native_throughput.py [--calls 4000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from _harness import measure, server_process

TEXT = "The answer is 4."
ANTHROPIC_BODY = orjson.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 5},
    }
)
GEMINI_BODY = orjson.dumps(
    {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": TEXT}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        "modelVersion": "gemini-bench",
    }
)
MISTRAL_BODY = orjson.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": "mistral-bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }
)
ANTHROPIC_SSE = b"".join(
    b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))
    for name, data in [
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0}),
        *[
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": t}})
            for t in ("The answer", " is", " 4.")
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
        ("message_stop", {"type": "message_stop"}),
    ]
)  # fmt: skip
TOKEN_BODY = orjson.dumps(
    {"access_token": "ya29.bench", "expires_in": 3600, "token_type": "Bearer"}
)
PROMPT = "What is 2 + 2? Answer with one short sentence."


def serve(port: int) -> None:
    """The zero-latency fake servers (child process)."""
    from aiohttp import web

    def canned(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=body, content_type="application/json")

        return handler

    async def messages(request: web.Request) -> web.Response:
        payload = orjson.loads(await request.read())
        if payload.get("stream"):
            return web.Response(body=ANTHROPIC_SSE, content_type="text/event-stream")
        return web.Response(body=ANTHROPIC_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/raw", canned(ANTHROPIC_BODY))
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1beta/models/{tail:.*}", canned(GEMINI_BODY))
    app.router.add_post("/v1/projects/{tail:.*}", canned(GEMINI_BODY))
    app.router.add_post("/v1/chat/completions", canned(MISTRAL_BODY))
    app.router.add_post("/token", canned(TOKEN_BODY))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def service_account(directory: Path, base: str) -> Path:
    """A generated service-account key whose token endpoint is the fake server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = directory / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "bench",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "bench@bench.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{base}/token",
            }
        )
    )
    return path


async def run(
    port: int, calls: int, concurrency: int, key_file: Path
) -> list[dict[str, float | str]]:
    import aiohttp

    from gauge.model.config import GenerateConfig
    from gauge.model.factory import get_model

    base = f"http://127.0.0.1:{port}"
    config = GenerateConfig(max_connections=concurrency)
    models = {
        "anthropic": get_model("anthropic/claude-bench", base_url=base, api_key="k", config=config),
        "google": get_model("google/gemini-bench", base_url=base, api_key="k", config=config),
        "vertex": get_model(
            "google/gemini-bench",
            base_url=base,
            config=config,
            project="bench",
            location="us-central1",
            credentials=str(key_file),
        ),
        "mistral": get_model(
            "mistral/mistral-bench", base_url=f"{base}/v1", api_key="k", config=config
        ),
    }
    for name, model in models.items():
        output = await model.generate(PROMPT)
        if output.completion != TEXT:
            raise SystemExit(f"{name} answered {output.completion!r}: the benchmark is broken")

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    raw_body = orjson.dumps(
        {
            "model": "claude-bench",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    )

    async def raw() -> object:
        async with session.post(
            f"{base}/raw", data=raw_body, headers={"Content-Type": "application/json"}
        ) as response:
            return orjson.loads(await response.read())

    async def stream() -> object:
        return [d async for d in models["anthropic"].stream(PROMPT)]

    results = [await measure("raw aiohttp POST", raw, calls, concurrency)]
    for name, model in models.items():
        label = f"{name} Model.generate"
        results.append(await measure(label, lambda m=model: m.generate(PROMPT), calls, concurrency))
    results.append(await measure("anthropic Model.stream (SSE)", stream, calls, concurrency))
    await session.close()
    for model in models.values():
        await model.close()
    return results


def translation_cost(iterations: int = 20000) -> dict[str, float]:
    """Microseconds of CPU per request-body build + response parse, per provider (no I/O)."""
    from gauge.model.config import GenerateConfig
    from gauge.model.messages import ChatMessageUser
    from gauge.model.providers.anthropic.request import build_body as anthropic_body
    from gauge.model.providers.anthropic.response import parse_message
    from gauge.model.providers.google.request import build_body as google_body
    from gauge.model.providers.google.response import parse_response
    from gauge.model.providers.mistral.request import build_body as mistral_body
    from gauge.model.providers.mistral.response import parse_completion

    messages = [ChatMessageUser(content=PROMPT)]
    config = GenerateConfig(max_tokens=64)
    cases: dict[str, tuple[Callable[[], object], Callable[[object], object], bytes]] = {
        "anthropic": (
            lambda: anthropic_body("m", messages, [], "none", config, 64),
            lambda body: parse_message(body, "m"),
            ANTHROPIC_BODY,
        ),
        "google": (
            lambda: google_body(messages, [], "none", config),
            lambda body: parse_response(body, "m"),
            GEMINI_BODY,
        ),
        "mistral": (
            lambda: mistral_body("m", messages, [], "none", config),
            lambda body: parse_completion(body, "m"),
            MISTRAL_BODY,
        ),
    }
    result = {}
    for name, (build, parse, answer) in cases.items():
        start = time.process_time()
        for _ in range(iterations):
            orjson.dumps(build())
            parse(orjson.loads(answer))
        result[name] = (time.process_time() - start) / iterations * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with server_process(serve) as port, tempfile.TemporaryDirectory() as tmp:
        key_file = service_account(Path(tmp), f"http://127.0.0.1:{port}")
        results = asyncio.run(run(port, args.calls, args.concurrency, key_file))
    raw_cpu = float(results[0]["cpu_ms"])
    print(f"calls={args.calls} concurrency={args.concurrency}")
    print("| client | calls/s | client CPU per call (ms) | over raw POST (ms) | CPU vs raw |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        cpu = float(r["cpu_ms"])
        print(
            f"| {r['name']} | {float(r['calls_s']):.0f} | {cpu:.3f} | {cpu - raw_cpu:+.3f} "
            f"| {cpu / raw_cpu:.2f}x |"
        )
    costs = translation_cost()
    print("\nTranslation alone (build body + JSON encode/decode + parse), us CPU per request:")
    print(", ".join(f"{name} {us:.1f}" for name, us in costs.items()))


if __name__ == "__main__":
    main()
