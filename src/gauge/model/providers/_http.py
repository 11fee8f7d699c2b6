"""Shared HTTP plumbing for providers that speak their wire format directly.

One pooled keep-alive aiohttp session per provider instance and event loop, or,
for plain-http servers, the lean HTTP/1.1 client of `_http1.py` (JSON POSTs and
server-sent event streams, for a fraction of aiohttp's CPU); orjson for bodies;
no retries here (the pipeline retries). Errors become `HTTPStatusError` (a
non-2xx answer) or `HTTPConnectionError` (no answer, or an unreadable one),
which `classify_http` maps to a RetryDecision.

Proxies (`_proxy.py`): HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, read
once per client, or the model's `-M proxy=URL`. aiohttp gets the chosen proxy
per request (`proxy=`; not `trust_env`, so NO_PROXY means the same on both
clients and ALL_PROXY counts); the lean client speaks to an http:// proxy as
a forward proxy (absolute-form request targets). A failure the proxy causes
names it, never with its credentials.

aiohttp is imported on first request, so importing a provider stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from gauge.errors import ConfigError
from gauge.model.api import FATAL, TRANSIENT, RetryDecision
from gauge.model.durations import parse_duration
from gauge.model.output import StreamInfo
from gauge.model.providers._http1 import Http1Pool, header_break, header_error
from gauge.model.providers._http1_body import ProtocolError
from gauge.model.providers._proxy import Proxies, Proxy, redact, tunnel_refused, unreachable

if TYPE_CHECKING:
    import aiohttp


class HTTPStatusError(Exception):
    """The server answered with a non-2xx status."""

    def __init__(
        self, status: int, message: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        self.retry_after = parse_retry_after(self.headers)


class HTTPConnectionError(ConnectionError):
    """No usable answer: refused, reset, closed mid-body, or not parseable."""

    via_proxy = False
    """Whether the failure was reaching a proxy (not the server behind it)."""


class ProxyConnectionError(HTTPConnectionError):
    """The proxy could not be reached: every server behind it is out of reach alike."""

    via_proxy = True


_JSON = {"Content-Type": "application/json"}


class HttpClient:
    """Pooled HTTP client for one provider instance (a session per event loop).

    `proxy` is the model's `-M proxy=` (a URL, or `none` for no proxy); without
    it the environment's proxy variables apply.
    """

    def __init__(
        self, base_url: str, headers: Mapping[str, str] | None = None, proxy: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        if "@" in self.base_url.partition("://")[2].partition("/")[0] and any(
            k.lower() == "authorization" for k in self.headers
        ):
            # Both would be the Authorization header; aiohttp refuses the pair per request.
            raise ConfigError(
                "the base URL carries user:password credentials and an API key is set too; "
                "both become the Authorization header: remove one of them"
            )
        if (name := header_break(self.headers)) is not None:
            raise header_error(name)
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()
        self.proxies = Proxies.from_environ(proxy)
        self.proxy: Proxy | None = self.proxies.for_url(self.base_url)
        """The proxy requests under the base URL go through (None: direct)."""
        # Plain-http servers (local, self-hosted) get the lean client (_http1.py),
        # for JSON POSTs and streams, directly or through an http:// proxy; https,
        # URL credentials, https:// proxies and GETs stay on aiohttp.
        self._pool: Http1Pool | None = None
        authority = self.base_url.partition("://")[2].partition("/")[0]
        if (
            self.base_url.startswith("http://")
            and "@" not in authority
            and (self.proxy is None or self.proxy.scheme == "http")
        ):
            self._pool = Http1Pool(self.base_url, self.headers, self.proxy)

    def session(self) -> aiohttp.ClientSession:
        """The running loop's session, created on first use."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
            session = aiohttp.ClientSession(
                connector=connector,
                headers=self.headers,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
            )
            self._sessions[loop] = session
        return session

    def url(self, path: str) -> str:
        """Absolute URL for `path` (an absolute URL is returned unchanged)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def proxy_for(self, url: str) -> Proxy | None:
        """The proxy a request to `url` goes through (None: direct)."""
        if not self.proxies:
            return None
        under_base = url.startswith(self.base_url)
        if under_base and url[len(self.base_url) :][:1] in ("", "/", "?"):
            return self.proxy
        return self.proxies.for_url(url)

    def proxy_url(self, url: str) -> str | None:
        """aiohttp's `proxy=` for a request to `url` (credentials included; None: direct)."""
        proxy = self.proxy_for(url)
        return None if proxy is None else proxy.url

    def connection_error(self, ex: Exception, url: str) -> Exception:
        """The error to raise for aiohttp's `ex` on a request to `url`.

        A proxy that cannot be reached, or that refuses to tunnel, is named (with
        the variable or model arg it came from); credentials never appear.
        """
        import aiohttp

        proxy = self.proxy_for(url)
        if proxy is not None:
            target = _target(self.base_url, url)
            if isinstance(ex, aiohttp.ClientProxyConnectionError):
                return ProxyConnectionError(unreachable(proxy, target, ex.os_error))
            if isinstance(ex, aiohttp.ClientHttpProxyError):
                message = tunnel_refused(proxy, target, ex.status, ex.message)
                return HTTPStatusError(ex.status, message, None, ex.headers)
        return HTTPConnectionError(redact(f"{type(ex).__name__}: {ex}"))

    def _status_error(self, status: int, url: str) -> None:
        """A 407 from the proxy forwarding a plain-http request names the proxy."""
        proxy = self.proxy_for(url)
        if proxy is not None:
            message = tunnel_refused(proxy, _target(self.base_url, url), status, "")
            raise HTTPStatusError(status, message)

    async def post_json(
        self,
        path: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """POST `payload` as JSON; return (parsed body, case-insensitive headers)."""
        data = orjson.dumps(payload)
        if self._pool is not None and not path.startswith(("http://", "https://")):
            try:
                reply = await self._pool.post(path, data, headers, params)
            except (OSError, ProtocolError) as ex:
                raise self._lean_error(ex) from ex
            if reply.status == 407:
                self._status_error(407, self.base_url)
            return _decode(reply.status, reply.body, reply.headers)
        import aiohttp

        hdrs = {**_JSON, **headers} if headers else _JSON
        url = self.url(path)
        try:
            async with self.session().post(
                url, data=data, headers=hdrs, params=params, proxy=self.proxy_url(url)
            ) as response:
                raw = await response.read()
                if response.status == 407:
                    self._status_error(407, url)
                return _decode(response.status, raw, response.headers)
        except aiohttp.ClientError as ex:
            raise self.connection_error(ex, url) from ex

    async def get_json(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        """GET `path`; return (parsed body, case-insensitive headers)."""
        import aiohttp

        url = self.url(path)
        try:
            async with self.session().get(
                url, headers=headers, proxy=self.proxy_url(url)
            ) as response:
                raw = await response.read()
                if response.status == 407:
                    self._status_error(407, url)
                return _decode(response.status, raw, response.headers)
        except aiohttp.ClientError as ex:
            raise self.connection_error(ex, url) from ex

    async def stream_sse(
        self,
        path: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[bytes | StreamInfo, None]:
        """POST `payload` and yield each server-sent event's `data` (without `[DONE]`).

        The first item is a StreamInfo with the response headers: a provider's
        stream passes it on, and the pipeline learns rate limits from it.
        """
        if self._pool is None or path.startswith(("http://", "https://")):
            # aclosing: a consumer that stops early releases the connection now, not at GC.
            async with contextlib.aclosing(
                self._stream_aiohttp(path, payload, headers, params)
            ) as items:
                async for item in items:
                    yield item
            return
        try:
            stream = await self._pool.stream(path, orjson.dumps(payload), headers, params)
        except (OSError, ProtocolError) as ex:
            raise self._lean_error(ex) from ex
        try:
            if stream.status >= 300:
                if stream.status == 407:
                    self._status_error(407, self.base_url)
                _decode(stream.status, stream.body, stream.headers)
            yield StreamInfo(headers=stream.headers)
            while events := await stream.events():
                for event in events:
                    yield event
        except ProtocolError as ex:
            raise self._lean_error(ex) from ex
        finally:
            # Read to its end: the connection is reused; stopped early: it is dropped.
            stream.close()

    async def _stream_aiohttp(
        self,
        path: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
    ) -> AsyncGenerator[bytes | StreamInfo, None]:
        import aiohttp

        hdrs = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **(headers or {}),
        }
        url = self.url(path)
        try:
            async with self.session().post(
                url,
                data=orjson.dumps(payload),
                headers=hdrs,
                params=params,
                proxy=self.proxy_url(url),
            ) as response:
                if response.status >= 300:
                    if response.status == 407:
                        self._status_error(407, url)
                    _decode(response.status, await response.read(), response.headers)
                yield StreamInfo(headers=response.headers)
                data: list[bytes] = []
                async for line in response.content:
                    line = line.rstrip(b"\r\n")
                    if not line:
                        if data:
                            event = b"\n".join(data)
                            data = []
                            if event.strip() == b"[DONE]":
                                return
                            yield event
                    elif line.startswith(b"data:"):
                        data.append(line[5:].lstrip(b" "))
                if data and b"\n".join(data).strip() != b"[DONE]":
                    yield b"\n".join(data)
        except aiohttp.ClientError as ex:
            raise self.connection_error(ex, url) from ex

    async def close(self) -> None:
        """Close every session and connection this client opened."""
        if self._pool is not None:
            self._pool.close()
        for session in list(self._sessions.values()):
            if not session.closed:
                await session.close()
        self._sessions.clear()

    def _lean_error(self, ex: Exception) -> HTTPConnectionError:
        """The error for the lean client's failure `ex` (naming the proxy, if one is used)."""
        message = self._lean_failure(ex)
        if self.proxy is not None and not isinstance(ex, ProtocolError):
            return ProxyConnectionError(message)
        return HTTPConnectionError(message)

    def _lean_failure(self, ex: Exception) -> str:
        """The message for the lean client's failure `ex`."""
        base_url = redact(self.base_url)
        if isinstance(ex, ProtocolError):
            via = f" (through proxy {self.proxy.public})" if self.proxy is not None else ""
            return f"{base_url}: {ex}{via}"
        if self.proxy is not None:  # the lean client only ever connects to the proxy
            return unreachable(self.proxy, self.base_url, ex)
        # As aiohttp words it, so a message reads the same on both clients.
        return f"ClientConnectorError: Cannot connect to host {base_url} [{_reason(ex)}]"


def _reason(ex: Exception) -> str:
    return (ex.strerror if isinstance(ex, OSError) else None) or str(ex) or type(ex).__name__


def _target(base_url: str, url: str) -> str:
    """What a proxy message names: the base URL, or another URL without its query."""
    return base_url if url.startswith(base_url) else url.partition("?")[0]


def _decode(status: int, raw: bytes, headers: Mapping[str, str]) -> tuple[Any, Mapping[str, str]]:
    # Headers are passed through as the response's own case-insensitive mapping:
    # copying them on every success costs more than the rest of the decoding.
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        if status < 300:
            raise HTTPConnectionError(
                f"HTTP {status} with a body that is not JSON: {raw[:200]!r}"
            ) from None
        body = raw.decode(errors="replace")
    if status >= 300:
        raise HTTPStatusError(status, error_message(body), body, headers)
    return body, headers


def error_message(body: Any) -> str:
    """The provider's own error message from a JSON (or text) error body."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for key in ("message", "msg", "detail", "error"):
                if isinstance(err.get(key), str):
                    return str(err[key])
        if isinstance(err, str):
            return err
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    if isinstance(body, str) and body.strip():
        return " ".join(body.split())[:500]
    return "no error message in the response"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from retry-after-ms, Retry-After (seconds or date), or reset headers."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        seconds = parse_duration(value)
        if seconds is not None:
            return max(0.0, seconds)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    resets = [
        s
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset")
        if (v := headers.get(name)) is not None and (s := parse_duration(v)) is not None
    ]
    return max(resets) if resets else None


RATE_LIMIT_STATUSES = frozenset({429})
TRANSIENT_STATUSES = frozenset({408, 409, 425, 500, 502, 503, 504, 520, 522, 524, 529})


def classify_http(ex: BaseException) -> RetryDecision | None:
    """The decision for our own HTTP errors, or None when `ex` is not one of them."""
    if isinstance(ex, HTTPStatusError):
        if ex.status in RATE_LIMIT_STATUSES:
            if _is_quota_exhausted(ex.body):
                return FATAL
            return RetryDecision("rate_limit", ex.retry_after)
        if ex.status in TRANSIENT_STATUSES or ex.status >= 500:
            return RetryDecision("transient", ex.retry_after)
        return FATAL
    if isinstance(ex, HTTPConnectionError | asyncio.TimeoutError):
        return TRANSIENT
    return None


def _is_quota_exhausted(body: Any) -> bool:
    # OpenAI answers 429 "insufficient_quota" when billing is exhausted: waiting won't help.
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return "insufficient_quota" in (str(err.get("code")), str(err.get("type")))
    return False
