"""The cache key: SHA-256 of the canonical JSON of a request's key components.

Components: schema version, provider, model, base URL (credentials removed),
messages (content only: no ids, sources, metadata; tool-call ids renumbered by
first appearance so a rerun's fresh ids still match), tools, tool choice, each
result-changing config field (`config.<name>`), the epoch (when per_epoch) and
the policy's scopes. The expiry is not a component: it is stored with the entry.

Each component is serialised once; the key hashes them all, and a short
fingerprint of each is stored with the entry so `cache explain` can name the
components in which a request differs from its nearest entry.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from pydantic import BaseModel

from gauge.model.cache.policy import CachePolicy, cache_epoch
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.tools import ToolChoice, ToolInfo

SCHEMA_VERSION = 1
"""Bump when the key material or the stored value format changes."""

NOT_IN_KEY = frozenset(
    {
        "max_retries",
        "timeout",
        "attempt_timeout",
        "max_connections",
        "drop_unsupported",
        "cache",
        "cache_prompt",
        # Applied to the messages before the cache sees them (already in the key).
        "system_message",
        "reasoning_history",
    }
)
"""Config fields that cannot change a response: timeouts, retries, connections, hints."""

ARGS_NOT_IN_KEY = frozenset(
    {"threads", "batch_size", "num_concurrent", "max_retries", "timeout", "max_connections"}
)
"""Model args that cannot change a result: threads, batching, concurrency, retries."""

_SECRET_NAME = re.compile(
    r"auth|key|token|secret|cookie|session|passw|signature|credential", re.IGNORECASE
)
_MESSAGE_EXCLUDE = {"id", "source", "metadata", "model"}
_SHORT = 48
"""Components whose JSON is at most this long are fingerprinted verbatim."""


@dataclass(slots=True)
class CacheKey:
    """A request's key and the serialised components it was built from."""

    model: str
    """`provider/model`, the unit of `cache_size` and `cache_clear(model=...)`."""
    components: dict[str, bytes]
    """Component name -> canonical JSON."""
    digest: bytes
    """SHA-256 of the canonical JSON of all components (32 bytes)."""

    @property
    def hex(self) -> str:
        """The key as hex, as `gauge cache list` shows it."""
        return self.digest.hex()

    def fingerprint(self) -> dict[str, Any]:
        """Per-component summaries: short JSON verbatim, longer JSON as a digest."""
        result: dict[str, Any] = {}
        for name, value in self.components.items():
            if name == "messages":
                result[name] = [_summary(m) for m in _message_parts(value)]
            else:
                result[name] = _summary(value)
        return result


def request_key(
    provider: str,
    model: str,
    base_url: str | None,
    messages: list[ChatMessage],
    tools: list[ToolInfo],
    tool_choice: ToolChoice,
    config: GenerateConfig,
    policy: CachePolicy,
    epoch: int | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> CacheKey:
    """The key of one prepared request (`epoch` defaults to `cache_epoch`).

    `model_args` are the provider's (`-M`) arguments: those that can change a
    result (hf/local's model_path, a tokenizer, max_length, ...) are a component.
    """
    parts: dict[str, bytes] = {
        "schema": canonical_json(SCHEMA_VERSION),
        "provider": canonical_json(provider),
        "model": canonical_json(model),
        "base_url": canonical_json(public_url(base_url)),
        "messages": canonical_json(message_material(messages)),
        "tools": canonical_json([t.model_dump(mode="json") for t in tools]),
        "tool_choice": canonical_json(
            tool_choice.model_dump(mode="json")
            if isinstance(tool_choice, BaseModel)
            else tool_choice
        ),
        "scopes": canonical_json(policy.scopes),
    }
    if policy.per_epoch:
        parts["epoch"] = canonical_json(cache_epoch.get() if epoch is None else epoch)
    for name, value in config_material(config).items():
        parts[f"config.{name}"] = canonical_json(value)
    if model_args and (material := args_material(model_args)):
        parts["model_args"] = canonical_json(material)
    return CacheKey(f"{provider}/{model}", parts, digest_of(parts))


def args_material(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """The model args that can change a result, with secrets and URL credentials removed.

    Names that look like credentials or headers are left out entirely (a key does
    not change a result, and the fingerprint stored for `cache explain` must never
    hold one); values that are not plain JSON become their `str`.
    """
    result: dict[str, Any] = {}
    for name, value in model_args.items():
        if name in ARGS_NOT_IN_KEY or _SECRET_NAME.search(name) or "header" in name.lower():
            continue
        if isinstance(value, str) and "://" in value:
            value = public_url(value)
        elif not isinstance(value, str | int | float | bool | type(None) | list | dict):
            value = str(value)
        result[name] = value
    return result


def message_material(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as they enter the key: content only, tool-call ids renumbered."""
    result = [
        m.model_dump(mode="json", exclude=_MESSAGE_EXCLUDE, exclude_none=True) for m in messages
    ]
    ids: dict[str, str] = {}
    for message in result:
        for call in message.get("tool_calls") or ():
            call["id"] = ids.setdefault(call["id"], f"call_{len(ids)}")
    for message in result:
        ref = message.get("tool_call_id")
        if isinstance(ref, str):
            message["tool_call_id"] = ids.get(ref, ref)
        elif isinstance(ref, list):
            message["tool_call_id"] = [ids.get(r, r) for r in ref]
    return result


def config_material(config: GenerateConfig) -> dict[str, Any]:
    """The result-changing config fields that are set, with auth-like headers removed."""
    result: dict[str, Any] = {}
    for name in config.model_fields_set:
        if name in NOT_IN_KEY:
            continue
        value = getattr(config, name)
        if name == "extra_headers" and value:
            value = {k: v for k, v in value.items() if not _SECRET_NAME.search(k)}
        if value is None or (name == "extra_headers" and not value):
            continue
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        elif name == "logit_bias":
            value = {str(token): bias for token, bias in value.items()}
        result[name] = value
    return result


def public_url(url: str | None) -> str | None:
    """`url` without user:password and without auth-like query parameters."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if not _SECRET_NAME.search(k)])
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), query, ""))


def compare(request: dict[str, Any], entry: dict[str, Any]) -> tuple[int, list[str]]:
    """(equal components, descriptions of the differing ones) for two fingerprints."""
    equal = 0
    differ: list[str] = []
    for name in sorted(request.keys() | entry.keys()):
        mine, theirs = request.get(name), entry.get(name)
        if mine == theirs:
            equal += 1
        elif name not in entry:
            differ.append(f"{name}: set in the request ({_show(mine)}), absent in the entry")
        elif name not in request:
            differ.append(f"{name}: absent in the request, {_show(theirs)} in the entry")
        elif name == "messages" and isinstance(mine, list) and isinstance(theirs, list):
            differ.append(_message_diff(mine, theirs))
        else:
            differ.append(f"{name}: {_show(mine)} in the request, {_show(theirs)} in the entry")
    return equal, differ


def _message_diff(mine: list[Any], theirs: list[Any]) -> str:
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
    if first is None:
        return f"messages: {len(mine)} in the request, {len(theirs)} in the entry"
    count = f" ({len(mine)} vs {len(theirs)} messages)" if len(mine) != len(theirs) else ""
    detail = ""
    if not any(_show(s) == "a different value" for s in (mine[first], theirs[first])):
        detail = f": {mine[first]} in the request, {theirs[first]} in the entry"
    return f"messages: message {first + 1} differs{count}{detail}"


def _show(summary: Any) -> str:
    if isinstance(summary, str) and summary.startswith("sha256:"):
        return "a different value"
    return str(summary)


def canonical_json(value: Any) -> bytes:
    """One key component as canonical JSON (sorted keys)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def digest_of(parts: dict[str, bytes]) -> bytes:
    """SHA-256 of the canonical JSON object made of `parts` (name -> component JSON)."""
    digest = hashlib.sha256()
    # The canonical JSON object of all components, assembled from their encodings.
    digest.update(b"{")
    for i, name in enumerate(sorted(parts)):
        if i:
            digest.update(b",")
        digest.update(b'"%s":' % name.encode())
        digest.update(parts[name])
    digest.update(b"}")
    return digest.digest()


def _summary(encoded: bytes) -> str:
    if len(encoded) <= _SHORT:
        return encoded.decode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()[:16]


def _message_parts(encoded: bytes) -> list[bytes]:
    return [canonical_json(m) for m in orjson.loads(encoded)]
