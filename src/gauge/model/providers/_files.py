"""Raw bytes over a provider's shared HttpClient: uploads and file downloads.

`HttpClient` speaks JSON; batch jobs also send prebuilt bodies (a multipart
upload, a JSON body encoded once to measure it) and read files that are not
JSON (JSONL results). These two calls use the client's session, proxy choice
and error mapping, so a failure reads the same as any call's: a non-2xx
answer is `HTTPStatusError` with the provider's message, no answer is
`HTTPConnectionError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gauge.model.providers._http import (
    HttpClient,
    HTTPConnectionError,
    HTTPStatusError,
    error_message,
)


async def post_bytes(
    client: HttpClient,
    path: str,
    data: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """POST `data` as is; return the parsed JSON answer."""
    raw, status, answer_headers = await _send(
        client, "POST", path, data, {"Content-Type": content_type, **(headers or {})}
    )
    _check(status, raw, answer_headers)
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise HTTPConnectionError(
            f"HTTP {status} with a body that is not JSON: {raw[:200]!r}"
        ) from None


async def get_bytes(
    client: HttpClient, path: str, headers: Mapping[str, str] | None = None
) -> bytes:
    """GET `path` (or an absolute URL); return the body as bytes."""
    raw, status, answer_headers = await _send(client, "GET", path, None, headers)
    _check(status, raw, answer_headers)
    return raw


async def _send(
    client: HttpClient,
    method: str,
    path: str,
    data: bytes | None,
    headers: Mapping[str, str] | None,
) -> tuple[bytes, int, Mapping[str, str]]:
    import aiohttp

    url = client.url(path)
    try:
        async with client.session().request(
            method, url, data=data, headers=headers, proxy=client.proxy_url(url)
        ) as response:
            return await response.read(), response.status, response.headers
    except aiohttp.ClientError as ex:
        raise client.connection_error(ex, url) from ex


def _check(status: int, raw: bytes, headers: Mapping[str, str]) -> None:
    if status < 300:
        return
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = raw.decode(errors="replace")
    raise HTTPStatusError(status, error_message(body), body, headers)
