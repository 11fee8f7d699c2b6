"""How a connection key is shown in stats, logs and errors."""

from __future__ import annotations


def public_key(key: str) -> str:
    """`key` as shown in stats and errors (no URL credentials)."""
    # connection_key() is provider|base_url|sha256(api key)[:12]|model: already
    # free of secrets, but drop URL credentials should a base URL carry them.
    parts = key.split("|")
    if len(parts) > 1 and "@" in parts[1]:
        scheme, _, rest = parts[1].partition("://")
        parts[1] = f"{scheme}://{rest.rpartition('@')[2]}" if rest else parts[1]
    return "|".join(parts)
