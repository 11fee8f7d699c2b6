"""Proxies: HTTP(S)_PROXY / ALL_PROXY / NO_PROXY and `-M proxy=`, through a small
forward + CONNECT proxy on 127.0.0.1 that records what passes through it, in
front of gauge.testing.OpenAIServer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gauge.errors import ConfigError
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.model.providers._http import HttpClient, HTTPConnectionError, HTTPStatusError
from gauge.model.providers._proxy import Proxies, redact
from gauge.testing import OpenAIServer

ONE_TRY = GenerateConfig(max_retries=0)


class Proxy:
    """A forward proxy (absolute-form `POST http://...` requests) that also tunnels
    `CONNECT host:port`; `seen` holds (method, target, Proxy-Authorization)."""

    def __init__(self, require: str | None = None) -> None:
        self.require = require
        self.seen: list[tuple[str, str, str | None]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")[:-2]
        method, target, version = lines[0].split(" ")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        auth = headers.get("proxy-authorization")
        self.seen.append((method, target, auth))
        if self.require is not None and auth != self.require:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
            return
        url = urlsplit(target)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        path = url.path + (f"?{url.query}" if url.query else "")
        kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-", "connection"))]
        request = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""])
        try:
            up_writer.write(request.encode("latin-1") + body)
            await _pipe(up_reader, writer)  # the origin closes after its answer; so do we
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    async with Proxy() as proxy:
        yield proxy


def client_of(model: Model) -> HttpClient:
    client = model.api.client  # type: ignore[attr-defined]
    assert isinstance(client, HttpClient)
    return client


async def generate_and_stream(model: Model) -> None:
    assert (await model.generate("one two", config=ONE_TRY)).completion == "one two"
    assert "".join([d async for d in model.stream("three four", config=ONE_TRY)]) == "three four"


# -- plain-http origins: the lean client speaks to the proxy --------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_http_proxy_carries_generate_and_stream(
    server: OpenAIServer, proxy: Proxy, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    async with get_model("openai-api/mock/m", base_url=server.url) as model:
        await generate_and_stream(model)
        client = client_of(model)
        assert client._pool is not None  # the lean client, as a forward-proxy client
        assert client.proxy is not None and client.proxy.source == variable
    target = f"{server.url}/chat/completions"
    assert proxy.seen == [("POST", target, None), ("POST", target, None)]
    assert server.count == 2


async def test_aiohttp_requests_go_through_the_proxy_too(
    server: OpenAIServer, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = HttpClient(server.url)
    try:
        body, _ = await client.get_json("models")
        assert body["data"]
    finally:
        await client.close()
    assert proxy.seen == [("GET", f"{server.url}/models", None)]


@pytest.mark.parametrize(
    "no_proxy",
    ["127.0.0.1", "{port}", "*", "localhost, 127.0.0.0/8", ".example.com,127.0.0.1"],
)
async def test_no_proxy_goes_direct_on_the_lean_client(
    server: OpenAIServer, proxy: Proxy, no_proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", no_proxy.replace("{port}", f"127.0.0.1:{server.port}"))
    async with get_model("openai-api/mock/m", base_url=server.url) as model:
        await generate_and_stream(model)
        client = client_of(model)
        assert client.proxy is None and client._pool is not None
    assert proxy.seen == []
    assert server.count == 2


async def test_no_proxy_for_another_port_still_proxies(
    server: OpenAIServer, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", f"127.0.0.1:{server.port + 1},example.com")
    async with get_model("openai-api/mock/m", base_url=server.url) as model:
        await model.generate("x", config=ONE_TRY)
    assert len(proxy.seen) == 1


async def test_model_arg_overrides_the_environment(
    server: OpenAIServer, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("NO_PROXY", "*")  # applies to the environment's proxies only
    async with get_model("openai-api/mock/m", base_url=server.url, proxy=proxy.url) as model:
        await generate_and_stream(model)
        assert client_of(model).proxy is not None
    assert [seen[0] for seen in proxy.seen] == ["POST", "POST"]
    assert "proxy" not in server.requests[-1].body  # a client arg, not a body field


async def test_model_arg_none_goes_direct(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")
    async with get_model("openai-api/mock/m", base_url=server.url, proxy="none") as model:
        await generate_and_stream(model)
        assert client_of(model).proxy is None
    assert server.count == 2


async def test_proxy_credentials_are_sent_and_never_shown(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Proxy(require=basic("user", "p@ss word")) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss%20word@127.0.0.1:{proxy.port}")
        async with get_model("openai-api/mock/m", base_url=server.url) as model:
            await generate_and_stream(model)
            assert "p%40ss" not in repr(client_of(model).proxy)
        assert [seen[2] for seen in proxy.seen] == [basic("user", "p@ss word")] * 2
        assert "proxy-authorization" not in server.requests[-1].headers


async def test_wrong_proxy_credentials_are_a_407_naming_the_variable(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Proxy(require=basic("user", "right")) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:wrong-secret@127.0.0.1:{proxy.port}")
        async with get_model("openai-api/mock/m", base_url=server.url) as model:
            with pytest.raises(HTTPStatusError) as caught:
                await model.generate("x", config=ONE_TRY)
    message = str(caught.value)
    assert caught.value.status == 407
    assert f"proxy {proxy.url} asks for credentials (407 Proxy Authentication Required)" in message
    assert "the user:password in HTTP_PROXY was refused" in message
    assert "wrong-secret" not in message
    assert [a["kind"] for a in caught.value.gauge_attempts] == ["fatal"]  # type: ignore[attr-defined]


# -- dead proxies --------------------------------------------------------------------------


async def test_a_dead_proxy_is_one_line_naming_it_on_the_lean_client(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = dead_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:hunter22@127.0.0.1:{port}")
    async with get_model("openai-api/mock/m", base_url=server.url) as model:
        for call in (
            model.generate("x", config=ONE_TRY),
            _drain(model.stream("x", config=ONE_TRY)),
        ):
            with pytest.raises(HTTPConnectionError) as caught:
                await call
            assert str(caught.value) == (
                f"cannot connect to proxy http://127.0.0.1:{port} (Connection refused) for "
                f"{server.url}: check HTTP_PROXY, or add 127.0.0.1 to NO_PROXY (local "
                "addresses go through the proxy too unless NO_PROXY names them)"
            )
    assert server.count == 0


async def test_a_dead_proxy_for_https_names_it_and_hides_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = dead_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:hunter22@127.0.0.1:{port}")
    base_url = "https://api.openai.test/v1"
    async with get_model("openai-api/mock/m", base_url=base_url, api_key="k") as model:
        with pytest.raises(HTTPConnectionError) as caught:
            await model.generate("x", config=ONE_TRY)
    assert str(caught.value) == (
        f"cannot connect to proxy http://127.0.0.1:{port} (Connection refused) for "
        f"{base_url}: check HTTPS_PROXY"
    )
    assert "hunter22" not in repr(caught.value.gauge_attempts)  # type: ignore[attr-defined]


async def test_a_dead_model_arg_proxy_says_check_the_model_arg() -> None:
    port = dead_port()
    client = HttpClient("https://api.openai.test/v1", proxy=f"127.0.0.1:{port}")
    try:
        with pytest.raises(
            HTTPConnectionError, match=r"for https://api\.openai\.test/v1: check -M proxy=$"
        ):
            await client.post_json("chat/completions", {})
    finally:
        await client.close()


async def _drain(items: AsyncIterator[Any]) -> None:
    async for _ in items:
        pass


# -- https origins: a CONNECT tunnel ---------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a self-signed 127.0.0.1 cert."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(cert_file))
    return server_context, client_context


@pytest.fixture
async def https_server(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """An OpenAIServer behind TLS; aiohttp's default context trusts its certificate."""
    import aiohttp.connector
    from aiohttp import web

    server_context, client_context = tls
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", client_context)
    runner = web.AppRunner(OpenAIServer().app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_https_goes_through_a_connect_tunnel(
    https_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Proxy(require=basic("user", "pw")) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:pw@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")  # not for https
        async with get_model("openai-api/mock/m", base_url=https_server, api_key="k") as model:
            await generate_and_stream(model)
    authority = urlsplit(https_server).netloc
    assert proxy.seen  # one tunnel per pooled connection, each authenticated
    assert set(proxy.seen) == {("CONNECT", authority, basic("user", "pw"))}


async def test_a_refused_tunnel_is_a_status_error_naming_the_proxy(
    https_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Proxy(require=basic("user", "pw")) as proxy:
        monkeypatch.setenv("https_proxy", f"http://user:bad-secret@127.0.0.1:{proxy.port}")
        async with get_model("openai-api/mock/m", base_url=https_server, api_key="k") as model:
            with pytest.raises(HTTPStatusError) as caught:
                await model.generate("x", config=ONE_TRY)
    assert caught.value.status == 407
    assert str(caught.value) == (
        f"HTTP 407: proxy {proxy.url} asks for credentials (407 Proxy Authentication "
        f"Required) for {https_server}: the user:password in https_proxy was refused"
    )


async def test_no_proxy_sends_https_direct(
    https_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with get_model("openai-api/mock/m", base_url=https_server, api_key="k") as model:
        await generate_and_stream(model)


# -- resolution and NO_PROXY matching (no network) --------------------------------------------


ENV = {"HTTPS_PROXY": "http://u:pw@proxy:3128", "HTTP_PROXY": "proxy:8080"}


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("", "https://api.openai.com/v1", False),
        ("", "http://localhost:8000/v1", False),  # nothing is exempt implicitly
        ("", "http://127.0.0.1:8000/v1", False),
        ("*", "https://api.openai.com", True),
        ("openai.com", "https://api.openai.com", True),
        ("openai.com", "https://openai.com", True),
        ("openai.com", "https://notopenai.com", False),
        (".openai.com", "https://openai.com", True),
        ("*.openai.com", "https://api.openai.com", True),
        ("API.OpenAI.com", "https://api.openai.com./v1", True),
        ("example.com:8443", "https://example.com:8443", True),
        ("example.com:8443", "https://example.com", False),
        ("example.com:443", "https://example.com", True),
        ("10.0.0.0/8", "http://10.1.2.3:8000", True),
        ("10.0.0.0/8", "http://11.1.2.3:8000", False),
        ("::1", "http://[::1]:8000", True),
        ("[::1]:8000", "http://[::1]:8000", True),
        ("[::1]:8000", "http://[::1]:8001", False),
        (" localhost , 127.0.0.1 ", "http://127.0.0.1:8000", True),
        ("http://internal.corp", "http://internal.corp/v1", True),
    ],
)
def test_no_proxy_matching(no_proxy: str, url: str, direct: bool) -> None:
    proxies = Proxies.from_environ(environ={**ENV, "NO_PROXY": no_proxy})
    assert (proxies.for_url(url) is None) is direct


def test_scheme_variables_and_their_precedence() -> None:
    proxies = Proxies.from_environ(environ=ENV)
    https = proxies.for_url("https://x")
    http = proxies.for_url("http://x")
    assert https is not None and https.public == "http://proxy:3128"
    assert https.authorization == basic("u", "pw") and https.source == "HTTPS_PROXY"
    assert http is not None and http.public == "http://proxy:8080" and http.authorization is None
    lower_first = Proxies.from_environ(environ={"HTTPS_PROXY": "http://a:1", "https_proxy": "b:2"})
    chosen = lower_first.for_url("https://x")
    assert chosen is not None and chosen.public == "http://b:2" and chosen.source == "https_proxy"
    assert Proxies.from_environ(environ={"HTTPS_PROXY": "  "}).for_url("https://x") is None
    assert not Proxies.from_environ(environ={})


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("socks5://user:secret@127.0.0.1:1080", r"SOCKS proxy \(socks5://\*\*\*@127\.0\.0\.1"),
        ("ftp://proxy", "scheme 'ftp' is not http or https"),
        ("http://:3128", "no host"),
    ],
)
def test_an_unusable_proxy_is_a_config_error_without_its_password(value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        HttpClient("https://api.openai.test/v1", proxy=value)
    assert "secret" not in str(caught.value)


def test_an_unusable_proxy_for_another_scheme_is_no_error() -> None:
    env = {"HTTPS_PROXY": "socks5://127.0.0.1:1080", "NO_PROXY": ""}
    assert Proxies.from_environ(environ=env).for_url("http://127.0.0.1:8000") is None


def test_an_https_proxy_keeps_a_plain_http_origin_on_aiohttp() -> None:
    client = HttpClient("http://127.0.0.1:8000/v1", proxy="https://proxy.test:443")
    assert client._pool is None
    assert client.proxy_url("http://127.0.0.1:8000/v1/chat") == "https://proxy.test:443"


def test_redact_hides_url_credentials() -> None:
    assert redact("via http://user:p@ss@proxy:3128/x") == "via http://***@proxy:3128/x"
    assert redact("no credentials http://proxy:3128") == "no credentials http://proxy:3128"


def test_provider_modules_accept_the_proxy_arg(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://127.0.0.1:3128"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("MISTRAL_API_KEY", "k")
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    for name in ("anthropic/claude-x", "mistral/mistral-small", "google/gemini-x"):
        model = get_model(name, proxy=url, memoize=False)
        client = model.api._client  # type: ignore[attr-defined]
        assert isinstance(client, HttpClient) and client.proxy is not None, name
        assert client.proxy.source == "-M proxy="
