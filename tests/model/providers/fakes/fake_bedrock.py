"""A fake Bedrock Runtime (Converse + ConverseStream) on 127.0.0.1, for offline tests.

Every request's SigV4 signature is checked the way AWS checks it: botocore
recomputes the signature from the request as received (method, raw path, the
signed headers, body) and the secret key the fake knows for the access key id.
A bad signature gets AWS's 403 InvalidSignatureException. Requests are recorded
with the verdict; answers come from a queue of `Reply`s ("ok" when empty).
ConverseStream answers are framed in AWS's binary event-stream format.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass
class Reply:
    """One scripted answer: a JSON body, or an event list for converse-stream."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] | None = None
    """(event type, payload) pairs; an event type `!name` sends an exception `name`."""


def converse_reply(
    content: list[dict[str, Any]] | None = None,
    stop_reason: str = "end_turn",
    usage: dict[str, int] | None = None,
) -> Reply:
    """A Converse answer as AWS shapes it."""
    return Reply(
        {
            "output": {"message": {"role": "assistant", "content": content or [{"text": "ok"}]}},
            "stopReason": stop_reason,
            "usage": usage or {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
            "metrics": {"latencyMs": 42},
        }
    )


def error_reply(code: str, status: int, message: str, retry_after: str | None = None) -> Reply:
    """An AWS error as Bedrock Runtime sends it (code in x-amzn-ErrorType)."""
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Reply({"message": message}, status=status, headers=headers)


def text_stream(
    chunks: list[str], stop_reason: str = "end_turn"
) -> list[tuple[str, dict[str, Any]]]:
    """The ConverseStream events of a streamed text answer."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": c}}) for c in chunks
    ]
    events += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": stop_reason}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}),
    ]
    return events


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (string headers only), CRCs included."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", 7, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def event_frame(event: str, payload: dict[str, Any]) -> bytes:
    """An event (or, for `!name`, an exception) frame."""
    body = orjson.dumps(payload)
    if event.startswith("!"):
        headers = {
            ":message-type": "exception",
            ":exception-type": event[1:],
            ":content-type": "application/json",
        }
    else:
        headers = {
            ":message-type": "event",
            ":event-type": event,
            ":content-type": "application/json",
        }
    return frame(headers, body)


class FakeBedrock:
    """Start with `await server.start()` (returns the base URL), stop with `await server.stop()`."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = dict(secrets or {})
        """Access key id -> secret key, for signature checks."""
        self.requests: list[dict[str, Any]] = []
        self.replies: list[Reply] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/model/{model_id}/converse", self._converse)
        app.router.add_post("/model/{model_id}/converse-stream", self._converse)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        verdict = self.check_signature(request, raw)
        self.requests.append(
            {
                "path": request.raw_path,
                "model_id": request.match_info["model_id"],
                "headers": dict(request.headers),
                "json": orjson.loads(raw),
                "signature": verdict,
            }
        )
        if verdict not in ("valid", "bearer"):
            return web.json_response(
                {"message": f"The request signature we calculated does not match ({verdict})"},
                status=403,
                headers={"x-amzn-ErrorType": "InvalidSignatureException:http://internal/"},
            )
        reply = self.replies.pop(0) if self.replies else converse_reply()
        streaming = request.path.endswith("/converse-stream")
        if reply.status >= 300 or not streaming:
            return web.Response(
                status=reply.status,
                body=orjson.dumps(reply.body),
                headers={"Content-Type": "application/json", **reply.headers},
            )
        response = web.StreamResponse(
            headers={"Content-Type": "application/vnd.amazon.eventstream"}
        )
        await response.prepare(request)
        for event, payload in reply.events or text_stream(["ok"]):
            data = event_frame(event, payload)
            # Split frames across writes so the client must reassemble partial messages.
            half = len(data) // 2
            await response.write(data[:half])
            await response.write(data[half:])
        await response.write_eof()
        return response

    def check_signature(self, request: web.Request, body: bytes) -> str:
        """'valid', 'bearer', or why the SigV4 signature is not valid."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return "bearer"
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "missing"
        fields = dict(
            part.split("=", 1) for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(", ")
        )
        access_key, date, region, service, terminator = fields["Credential"].split("/")
        secret = self.secrets.get(access_key)
        if secret is None:
            return f"unknown access key {access_key}"
        if service != "bedrock" or terminator != "aws4_request":
            return f"wrong scope {fields['Credential']}"
        signed = fields["SignedHeaders"].split(";")
        for required in ("host", "x-amz-date"):
            if required not in signed:
                return f"{required} not signed"
        amz_date = request.headers.get("X-Amz-Date", "")
        if amz_date[:8] != date:
            return "scope date differs from X-Amz-Date"
        headers = {name: request.headers[name] for name in signed if name != "host"}
        aws_request = AWSRequest(
            method=request.method,
            url=f"http://{request.host}{request.raw_path}",
            data=body,
            headers=headers,
        )
        aws_request.context["timestamp"] = amz_date
        token = request.headers.get("X-Amz-Security-Token")
        signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
        if signer.signed_headers(signer.headers_to_sign(aws_request)) != fields["SignedHeaders"]:
            return "signed header list does not match the headers sent"
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        return "valid" if expected == fields["Signature"] else "signature mismatch"
