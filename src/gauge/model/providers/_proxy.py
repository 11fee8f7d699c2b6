"""Which proxy, if any, a provider's request goes through.

As the official SDKs (httpx), requests and curl read them: `HTTPS_PROXY` for
https:// URLs, `HTTP_PROXY` for http:// ones, `ALL_PROXY` for either when the
scheme's own is unset (each in either case, the lower-case one first), and
`NO_PROXY` for the hosts that go direct. `-M proxy=URL` replaces all of them
for one model (NO_PROXY included, as an explicit proxy does in httpx);
`-M proxy=none` sends that model direct whatever the environment says.

NO_PROXY is a comma list of `*` (everything), host names (`example.com` also
covers its subdomains; a leading `.` or `*.` is the same), `host:port`, IP
addresses (`::1`, `[::1]:8080`) and networks (`10.0.0.0/8`). Nothing is exempt
implicitly: localhost goes through a proxy unless NO_PROXY names it, as in
httpx, requests, curl and aiohttp.

Only http:// and https:// proxies are supported (aiohttp has no SOCKS); a
SOCKS URL is a configuration error when it would apply. The environment is
read once per client (`Proxies.from_environ`), not per request.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from gauge.errors import ConfigError

ARG = "-M proxy="
"""How the model arg is named in messages (the `source` of an explicit proxy)."""
DIRECT = frozenset({"", "none", "direct"})
"""`-M proxy=` values that mean: no proxy for this model, whatever the environment says."""
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s?#]*@")
"""`scheme://user:password@`, up to the authority's last `@` (a password may hold one)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def redact(text: str) -> str:
    """`text` with every `scheme://user:password@` credential replaced by `***`."""
    if "@" not in text:
        return text
    return _CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy: where it is, how to authenticate to it, and where it was configured."""

    url: str = field(repr=False)
    """The URL to hand to aiohttp, credentials included (never put it in a message)."""
    public: str
    """`scheme://host:port`, safe for messages."""
    scheme: str
    host: str
    port: int
    authorization: str | None = field(repr=False)
    """`Basic ...` for the Proxy-Authorization header, from the URL's user:password."""
    source: str
    """The variable (`HTTPS_PROXY`, `https_proxy`, ...) or `-M proxy=` it came from."""

    @classmethod
    def parse(cls, value: str, source: str) -> Proxy:
        """The proxy at `value` (`host:port` alone means http://), or a ConfigError."""
        value = value.strip()
        url = value if "://" in value else f"http://{value}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _bad_url(value, source, "not a URL") from None
        scheme = parts.scheme.lower()
        if scheme.startswith("socks"):
            raise ConfigError(
                f"{source} is a SOCKS proxy ({redact(value)}): gauge speaks to HTTP proxies "
                "only; use an http:// proxy (or an HTTP-to-SOCKS bridge), or unset it"
            )
        if scheme not in ("http", "https"):
            raise _bad_url(value, source, f"scheme {scheme!r} is not http or https")
        if not parts.hostname:
            raise _bad_url(value, source, "no host")
        port = port or (443 if scheme == "https" else 80)
        authority = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        authorization = None
        if parts.username is not None or parts.password is not None:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        public = f"{scheme}://{authority}:{port}"
        return cls(url, public, scheme, parts.hostname, port, authorization, source)


def _bad_url(value: str, source: str, why: str) -> ConfigError:
    return ConfigError(
        f"{source} is not a proxy URL ({why}): {redact(value)!r}; "
        "expected http://host:port or http://user:password@host:port"
    )


@dataclass(frozen=True, slots=True)
class _Rule:
    """One NO_PROXY entry: a domain (with its subdomains), an IP network, and a port."""

    domain: str | None
    network: IPNetwork | None
    port: int | None

    def matches(
        self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int
    ) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip is not None and ip in self.network
        assert self.domain is not None
        return host == self.domain or host.endswith("." + self.domain)


def parse_no_proxy(value: str) -> tuple[bool, tuple[_Rule, ...]]:
    """(everything bypasses, the rules) for a NO_PROXY value."""
    rules: list[_Rule] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if "://" in entry:  # httpx and requests accept `http://host` too
            entry = entry.partition("://")[2]
        entry = entry.rstrip("/")
        if not entry:
            continue
        if entry == "*":
            return True, ()
        rule = _rule(entry)
        if rule is not None:
            rules.append(rule)
    return False, tuple(rules)


def _rule(entry: str) -> _Rule | None:
    host, port = entry, None
    if entry.startswith("["):  # [v6] or [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = _port(rest[1:]) if rest.startswith(":") else None
    elif entry.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        host, _, text = entry.partition(":")
        port = _port(text)
        if port is None:
            return None
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        host = host.lstrip("*").lstrip(".").rstrip(".")
        return _Rule(host, None, port) if host else None
    return _Rule(None, network, port)


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() else None


class Proxies:
    """The proxy for each URL, from the environment (read once) or an explicit URL."""

    __slots__ = ("_by_scheme", "_bypass_all", "_parsed", "_rules")

    def __init__(
        self,
        by_scheme: Mapping[str, tuple[str, str]],
        no_proxy: str = "",
    ) -> None:
        # scheme -> (raw URL, where it came from); parsed only when a URL uses it,
        # so an unusable proxy for a scheme nobody asks for is no error.
        self._by_scheme = dict(by_scheme)
        self._bypass_all, self._rules = parse_no_proxy(no_proxy)
        self._parsed: dict[str, Proxy] = {}

    @classmethod
    def from_environ(
        cls, proxy: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Proxies:
        """`-M proxy=` when given (`none`: no proxy), otherwise the environment's variables."""
        if proxy is not None:
            if proxy.strip().lower() in DIRECT:
                return cls({})
            return cls({"http": (proxy, ARG), "https": (proxy, ARG)})
        env = os.environ if environ is None else environ
        found: dict[str, tuple[str, str]] = {}
        fallback = _variable(env, "all_proxy")
        for scheme in ("http", "https"):
            if (chosen := _variable(env, f"{scheme}_proxy") or fallback) is not None:
                found[scheme] = chosen
        no_proxy = _variable(env, "no_proxy") if found else None
        return cls(found, no_proxy[0] if no_proxy else "")

    def __bool__(self) -> bool:
        return bool(self._by_scheme)

    def for_url(self, url: str) -> Proxy | None:
        """The proxy a request to `url` goes through, or None (direct)."""
        if not self._by_scheme:
            return None
        parts = urlsplit(url)
        configured = self._by_scheme.get(parts.scheme.lower())
        if configured is None:
            return None
        raw, source = configured
        if source != ARG and self.bypassed(parts.hostname or "", parts.port, parts.scheme):
            return None
        proxy = self._parsed.get(raw)
        if proxy is None or proxy.source != source:
            proxy = self._parsed[raw] = Proxy.parse(raw, source)
        return proxy

    def bypassed(self, host: str, port: int | None = None, scheme: str = "http") -> bool:
        """Whether NO_PROXY sends `host` (at `port`) direct."""
        if self._bypass_all:
            return True
        if not self._rules:
            return False
        host = host.lower().rstrip(".")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        port = port or (443 if scheme.lower() == "https" else 80)
        return any(rule.matches(host, ip, port) for rule in self._rules)


def _variable(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(value, the variable's own name) of `name` in either case, lower first; blank is unset."""
    for spelling in (name, name.upper()):
        value = env.get(spelling)
        if value and value.strip():
            return value.strip(), spelling
    return None


# -- messages (never with credentials) ---------------------------------------------------


def unreachable(proxy: Proxy, target: str, ex: Exception) -> str:
    """The one line for a proxy that could not be connected to (`ex`: why)."""
    errno = ex.errno if isinstance(ex, OSError) else None
    reason = os.strerror(errno) if errno else str(ex) or type(ex).__name__
    return f"cannot connect to proxy {proxy.public} ({reason}) for {redact(target)}: " + _check(
        proxy, target
    )


def tunnel_refused(proxy: Proxy, target: str, status: int, reason: str) -> str:
    """The one line for a proxy that answered a CONNECT (or a forwarded request) with `status`."""
    if not reason:
        with contextlib.suppress(ValueError):
            reason = HTTPStatus(status).phrase
    what = f"{status} {reason}".strip()
    if status == 407:
        fix = (
            f"the user:password in {proxy.source} was refused"
            if proxy.authorization
            else f"put user:password in {proxy.source} (http://user:password@host:port)"
        )
        return f"proxy {proxy.public} asks for credentials ({what}) for {redact(target)}: {fix}"
    return f"proxy {proxy.public} refused the request for {redact(target)} ({what}): " + _check(
        proxy, target
    )


def _check(proxy: Proxy, target: str) -> str:
    if proxy.source == ARG:
        return f"check {ARG}"
    host = urlsplit(target).hostname or ""
    if _is_local(host):
        return (
            f"check {proxy.source}, or add {host} to NO_PROXY (local addresses go "
            "through the proxy too unless NO_PROXY names them)"
        )
    return f"check {proxy.source}"


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
