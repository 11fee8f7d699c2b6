"""Keep secrets out of journals: keys, tokens, auth headers and URL credentials.

Two passes. Structured values (model args, headers, config) are cleaned by
name: a key with a word ending in key / token / secret / password, or one of
auth / authorization / credential / cookie, has its value replaced. Then every serialised line has
every known secret value (env keys, those named values) replaced byte for
byte, and `scheme://user:pass@host` credentials stripped, so a secret echoed
anywhere (a prompt, an error message, a URL) is still caught.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from typing import Any

from gauge.model.credentials import is_secret_name

__all__ = ["MASK", "Redactor", "is_secret_name"]

MASK = "********"
_ENV_SECRET = re.compile(r"(_API_KEY|_KEY|_TOKEN|_SECRET|_PASSWORD)$|^(HF_TOKEN)$", re.I)
_URL_CREDENTIALS = re.compile(rb"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@\"]+(?::[^/\s@\"]*)?@")
_MIN_SECRET = 6
"""Shorter values are not replaced in free text: they would mangle ordinary words."""


class Redactor:
    """Replaces known secret values and URL credentials in journal lines."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[bytes] = []
        for value in secrets:
            self.add(value)

    @classmethod
    def from_environ(cls, extra: Iterable[str] = ()) -> Redactor:
        """A redactor knowing every secret-looking environment variable plus `extra`."""
        values = [v for k, v in os.environ.items() if _ENV_SECRET.search(k)]
        return cls([*values, *extra])

    def add(self, value: Any) -> None:
        """Also redact `value` (ignored when too short to be a real secret)."""
        if value is None:
            return
        text = value.get() if hasattr(value, "get") and not isinstance(value, dict) else value
        if not isinstance(text, str) or len(text) < _MIN_SECRET:
            return
        data = text.encode()
        if data not in self._secrets:
            self._secrets.append(data)
            # Longest first, so a secret containing another is replaced whole.
            self._secrets.sort(key=len, reverse=True)

    def collect(self, value: Any) -> Any:
        """Learn the secrets inside `value` (by name) and return it with them masked."""
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(key, str) and is_secret_name(key) and item is not None:
                    if isinstance(item, str):
                        self.add(item)
                        self.add(_bearer_token(item))
                    out[key] = MASK
                else:
                    out[key] = self.collect(item)
            return out
        if isinstance(value, list | tuple):
            return [self.collect(item) for item in value]
        if isinstance(value, str) and "://" in value:
            self.add_url(value)
            return self.text(value)
        return value

    def add_url(self, url: str) -> None:
        """Learn the user and password inside `url`, if any."""
        from urllib.parse import unquote, urlsplit

        try:
            parts = urlsplit(url)
        except ValueError:
            return
        if parts.password:
            self.add(parts.password)
            self.add(unquote(parts.password))
            # HTTP clients send URL credentials as `Basic base64(user:password)`.
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            self.add(base64.b64encode(pair.encode()).decode())

    def line(self, data: bytes) -> bytes:
        """`data` with every known secret and URL credential replaced."""
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, b"********")
        if b"://" in data and b"@" in data:
            data = _URL_CREDENTIALS.sub(rb"\1" + MASK.encode() + b"@", data)
        return data

    def text(self, value: str) -> str:
        """`value` redacted like a journal line."""
        return self.line(value.encode()).decode()


def _bearer_token(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() if token and scheme.lower() in ("bearer", "token", "basic") else None
