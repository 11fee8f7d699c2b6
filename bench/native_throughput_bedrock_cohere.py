"""Client CPU per call for bedrock/ and cohere/ against zero-latency fake servers.

One run, concurrency C (default 64): calls/s and client CPU per call for
  raw      a bare aiohttp POST + orjson parse of the same body (the floor),
  cohere   Model.generate on cohere/<model> (full pipeline + translation),
  bedrock  Model.generate on bedrock/<model-id> (full pipeline + translation +
           SigV4 signing with botocore), and again with a bearer key (no signing),
plus botocore's SigV4 signing alone. The servers run in a child process, so the
process CPU measured here is the client's alone.

    .venv/bin/python bench/native_throughput_bedrock_cohere.py [--calls 4000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson
from _harness import measure, server_process

COHERE_BODY = orjson.dumps(
    {
        "id": "b",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "The answer is 4."}]},
        "usage": {"tokens": {"input_tokens": 12, "output_tokens": 5}},
    }
)
CONVERSE_BODY = orjson.dumps(
    {
        "output": {"message": {"role": "assistant", "content": [{"text": "The answer is 4."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
        "metrics": {"latencyMs": 1},
    }
)
PROMPT = "What is 2 + 2? Answer with one short sentence."
MODEL_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"


def serve(port: int) -> None:
    """The zero-latency fake servers (child process)."""
    from aiohttp import web

    async def cohere(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=COHERE_BODY, content_type="application/json")

    async def converse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CONVERSE_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v2/chat", cohere)
    app.router.add_post("/raw", cohere)
    app.router.add_post("/model/{model_id}/converse", converse)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def sign_cost(iterations: int = 5000) -> float:
    """Microseconds of CPU per SigV4 signature of a typical Converse body."""
    from botocore.credentials import ReadOnlyCredentials

    from gauge.model.providers.bedrock.auth import AwsAuth

    auth = AwsAuth(region="us-east-1")
    creds = ReadOnlyCredentials("AKIDBENCH", "secret", None)
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude%3A0/converse"
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": PROMPT}]}]})
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    start = time.process_time()
    for _ in range(iterations):
        auth.sign(creds, url, body, headers)
    return (time.process_time() - start) / iterations * 1e6


async def run(port: int, calls: int, concurrency: int) -> list[dict[str, float | str]]:
    import aiohttp

    from gauge.model.config import GenerateConfig
    from gauge.model.factory import get_model

    base = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    config = GenerateConfig(max_tokens=64, max_connections=concurrency)
    cohere = get_model("cohere/command-r", base_url=base, api_key="k", config=config)
    bedrock = get_model(f"bedrock/{MODEL_ID}", base_url=base, config=config)
    # The same provider with a Bedrock API key (bearer token): isolates the signing cost.
    bearer = get_model(f"bedrock/{MODEL_ID}", base_url=base, api_key="bench", config=config)

    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)
    raw_body = orjson.dumps(
        {"model": "command-r", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
    )

    async def raw() -> object:
        async with session.post(
            f"{base}/raw", data=raw_body, headers={"Content-Type": "application/json"}
        ) as response:
            return orjson.loads(await response.read())

    results = [
        await measure("raw aiohttp POST", raw, calls, concurrency),
        await measure("cohere Model.generate", lambda: cohere.generate(PROMPT), calls, concurrency),
        await measure(
            "bedrock Model.generate (SigV4)", lambda: bedrock.generate(PROMPT), calls, concurrency
        ),
        await measure(
            "bedrock Model.generate (bearer key, no signing)",
            lambda: bearer.generate(PROMPT),
            calls,
            concurrency,
        ),
    ]
    out = await bedrock.generate(PROMPT)
    if out.completion != "The answer is 4.":
        raise SystemExit(f"bedrock answered {out.completion!r}: the benchmark is broken")
    await session.close()
    await cohere.close()
    await bedrock.close()
    await bearer.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with server_process(serve) as port:
        results = asyncio.run(run(port, args.calls, args.concurrency))
    raw_cpu = float(results[0]["cpu_ms"])
    print(f"calls={args.calls} concurrency={args.concurrency}")
    print("| client | calls/s | client CPU per call (ms) | over raw POST (ms) |")
    print("|---|---:|---:|---:|")
    for r in results:
        cpu = float(r["cpu_ms"])
        print(f"| {r['name']} | {float(r['calls_s']):.0f} | {cpu:.3f} | {cpu - raw_cpu:+.3f} |")
    print(f"\nSigV4 signing alone: {sign_cost():.1f} us CPU per request")


if __name__ == "__main__":
    main()
