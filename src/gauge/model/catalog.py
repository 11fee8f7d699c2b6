"""Provider catalogue rows for `gauge models` (and docs)."""

from __future__ import annotations

from typing import Any

from gauge.errors import GaugeError, one_line
from gauge.model.factory import env_vars
from gauge.model.registry import is_importable, provider_class, provider_names


def provider_rows() -> list[dict[str, Any]]:
    """One row per known provider; a provider that fails to load says why."""
    rows: list[dict[str, Any]] = []
    for name in provider_names():
        try:
            cls = provider_class(name)
        except GaugeError as ex:
            rows.append(
                {
                    "provider": name,
                    "extra": None,
                    "installed": False,
                    "needs_api_key": False,
                    "api_key_vars": [],
                    "base_url_vars": [],
                    "default_base_url": None,
                    "honours": [],
                    "streaming": False,
                    "chat": False,
                    "loglikelihood": False,
                    "error": one_line(ex),
                }
            )
            continue
        rows.append(
            {
                "provider": name,
                "extra": cls.extra,
                "installed": all(is_importable(m) for m in cls.requires),
                "needs_api_key": cls.needs_api_key,
                "api_key_vars": list(env_vars(cls, name, "API_KEY")),
                "base_url_vars": list(env_vars(cls, name, "BASE_URL")),
                "default_base_url": cls.default_base_url,
                "honours": sorted(cls.honours),
                "streaming": cls.supports_streaming,
                "chat": cls.supports_chat,
                "loglikelihood": cls.supports_loglikelihood,
            }
        )
    return rows
