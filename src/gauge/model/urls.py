"""Base-URL checks shared by the factory and the providers that resolve their own URL."""

from __future__ import annotations

from gauge.errors import ConfigError


def check_base_url(url: str | None) -> None:
    """Refuse a base URL that is not http(s), before any request is made."""
    if url and not url.strip().lower().startswith(("http://", "https://")):
        raise ConfigError(
            f"base URL {url[:60]!r} must start with http:// or https:// "
            "(e.g. http://127.0.0.1:8000/v1)"
        )
