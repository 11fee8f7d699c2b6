"""Vertex AI access tokens through google-auth (the `google` extra).

Credentials come from `credentials=PATH` (service-account or authorized-user
JSON) or the normal chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud ADC, the
metadata server). Loading and refreshing block on network I/O, so both run in a
worker thread; a lock makes concurrent requests share one refresh. The token
endpoint is called with urllib, so google-auth needs no HTTP library of its own.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from typing import Any

from gauge.errors import ConfigError, MissingExtra
from gauge.model.providers._proxy import DIRECT

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class VertexAuth:
    """Bearer tokens for Vertex AI, refreshed before they expire."""

    def __init__(self, credentials_file: str | None = None, proxy: str | None = None) -> None:
        try:
            import google.auth  # noqa: F401
        except ImportError as ex:
            raise MissingExtra("Vertex AI needs google-auth: pip install 'gauge[google]'") from ex
        self.credentials_file = credentials_file
        self.proxy = proxy
        """`-M proxy=` for token refreshes (None: urllib reads the proxy variables itself)."""
        self.project: str | None = None
        self._credentials: Any = None
        # One lock per event loop: an asyncio.Lock cannot be shared across loops.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def token(self) -> str:
        """A valid access token (refreshing it off the event loop when needed)."""
        credentials = self._credentials
        if credentials is not None and credentials.valid:
            return str(credentials.token)
        async with self._lock():
            if self._credentials is None:
                self._credentials, self.project = await asyncio.to_thread(self._load)
            if not self._credentials.valid:
                await asyncio.to_thread(self._credentials.refresh, UrllibRequest(self.proxy))
            return str(self._credentials.token)

    async def default_project(self) -> str | None:
        """The project named by the credentials, loading them if needed."""
        if self._credentials is None:
            async with self._lock():
                if self._credentials is None:
                    self._credentials, self.project = await asyncio.to_thread(self._load)
        return self.project

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def _load(self) -> tuple[Any, str | None]:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            if self.credentials_file:
                return _from_file(self.credentials_file)
            return google.auth.default(scopes=list(SCOPES))
        except (DefaultCredentialsError, OSError, ValueError, KeyError) as ex:
            source = self.credentials_file or "the default credential chain"
            raise ConfigError(
                f"Vertex AI could not load Google credentials from {source} ({ex}); "
                "pass -M credentials=PATH, set GOOGLE_APPLICATION_CREDENTIALS, or run "
                "`gcloud auth application-default login`"
            ) from None


def _from_file(path: str) -> tuple[Any, str | None]:
    """Service-account or authorized-user credentials from a JSON key file."""
    import json

    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES)
        )
        return credentials, info.get("project_id")
    if kind == "authorized_user":
        from google.oauth2.credentials import Credentials

        user = Credentials.from_authorized_user_info(info, scopes=list(SCOPES))  # type: ignore[no-untyped-call]
        return user, info.get("quota_project_id")
    raise ValueError(
        f"unsupported credential type {kind!r} (use a service_account or authorized_user file)"
    )


class UrllibRequest:
    """A google.auth transport built on urllib (used only for token refreshes).

    urllib honours HTTP(S)_PROXY / NO_PROXY itself; `proxy` (`-M proxy=`)
    replaces them (`none`: direct).
    """

    def __init__(self, proxy: str | None = None) -> None:
        self._open: Callable[..., Any] = urllib.request.urlopen
        if proxy is not None:
            direct = proxy.strip().lower() in DIRECT
            handler = urllib.request.ProxyHandler({} if direct else {"http": proxy, "https": proxy})
            self._open = urllib.request.build_opener(handler).open

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        from google.auth.exceptions import TransportError

        request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
        try:
            with self._open(request, timeout=timeout or 60) as response:
                return _Response(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as ex:
            return _Response(ex.code, dict(ex.headers), ex.read())
        except (urllib.error.URLError, OSError) as ex:
            raise TransportError(f"token request to {url} failed: {ex}") from ex  # type: ignore[no-untyped-call]


class _Response:
    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data
