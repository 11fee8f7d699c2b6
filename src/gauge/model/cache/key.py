"""The cache key: SHA-256 of the canonical JSON of a request's key components.

Components: schema version, provider, model, base URL (credentials removed),
messages (content only: no ids, sources, metadata; tool-call ids renumbered by
first appearance so a rerun's fresh ids still match), tools, tool choice, each
result-changing config field (`config.<name>`), the epoch (when per_epoch) and
the policy's scopes. The expiry is not a component: it is stored with the entry.

Each component is serialised once (those every request of a model shares,
once per model: `model_material`); the key hashes them all, and a short
fingerprint of each is stored with the entry so `cache explain` can name the
components in which a request differs from its nearest entry.
"""

from __future__ import annotations

import functools
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
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
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
        # A batch job answers like a real-time call (the ids depend on the key).
        "batch",
        # Applied to the messages before the cache sees them (already in the key).
        "system_message",
        "reasoning_history",
    }
)
"""Config fields that cannot change a response: timeouts, retries, connections, hints."""

ARGS_NOT_IN_KEY = frozenset(
    {
        "threads",
        "batch_size",
        "num_concurrent",
        "max_retries",
        "timeout",
        "max_connections",
        "proxy",
    }
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
    model_parts: ModelParts | None = None,
) -> CacheKey:
    """The key of one prepared request (`epoch` defaults to `cache_epoch`).

    `model_args` (-M) that can change a result are a component; `model_parts` is
    `model_material(provider, model, base_url, model_args)`, kept by the caller.
    """
    if model_parts is None:
        model_parts = model_material(provider, model, base_url, model_args)
    shared = model_parts.parts
    encoded_messages = canonical_json(message_material(messages))
    encoded_tools = canonical_json([t.model_dump(mode="json") for t in tools]) if tools else b"[]"
    encoded_choice = _choice_json(tool_choice)
    encoded_scopes = canonical_json(policy.scopes) if policy.scopes else b"{}"
    # The components in the order they always had (the stored fingerprint keeps it).
    parts: dict[str, bytes] = {
        "schema": shared["schema"],
        "provider": shared["provider"],
        "model": shared["model"],
        "base_url": shared["base_url"],
        "messages": encoded_messages,
        "tools": encoded_tools,
        "tool_choice": encoded_choice,
        "scopes": encoded_scopes,
    }
    # `digest_of(parts)`, assembled in the names' sorted order (base_url < config.*
    # < epoch < messages < model < model_args < ... < tools) without sorting.
    body = [model_parts.head]
    if policy.per_epoch:
        encoded_epoch = canonical_json(cache_epoch.get() if epoch is None else epoch)
        parts["epoch"] = encoded_epoch
    _add_config(config, parts, body)
    if policy.per_epoch:
        body.append(b',"epoch":' + encoded_epoch)
    body += (
        b',"messages":',
        encoded_messages,
        model_parts.middle,
        b',"scopes":',
        encoded_scopes,
        b',"tool_choice":',
        encoded_choice,
        b',"tools":',
        encoded_tools,
        b"}",
    )
    if (args := shared.get("model_args")) is not None:
        parts["model_args"] = args
    return CacheKey(model_parts.name, parts, hashlib.sha256(b"".join(body)).digest())


def _add_config(config: GenerateConfig, parts: dict[str, bytes], body: list[bytes]) -> None:
    """Add the config fields that can change a response to the parts and the digest body."""
    material = config_material(config)
    for name in sorted(material):
        label = f"config.{name}"
        encoded = parts[label] = canonical_json(material[name])
        body.append(b',"%s":%s' % (label.encode(), encoded))


@dataclass(frozen=True, slots=True)
class ModelParts:
    """The key components every request of one model shares, encoded once."""

    name: str
    """`provider/model`."""
    parts: dict[str, bytes]
    """schema, provider, model, base_url and (when any count) model_args."""
    head: bytes
    """The canonical JSON up to the first request component: `{"base_url":...`."""
    middle: bytes
    """The shared components between messages and scopes: `,"model":...,"schema":...`."""


def model_material(
    provider: str,
    model: str,
    base_url: str | None,
    model_args: Mapping[str, Any] | None = None,
) -> ModelParts:
    """The key components every request of one model shares (schema, provider, model,
    base URL, model args), encoded; `request_key` adds the request's own."""
    material = args_material(model_args) if model_args else None
    if not material:
        return _shared_parts(provider, model, base_url)
    return _model_parts(provider, model, base_url, canonical_json(material))


@functools.lru_cache(maxsize=256)
def _shared_parts(provider: str, model: str, base_url: str | None) -> ModelParts:
    return _model_parts(provider, model, base_url, None)


def _model_parts(
    provider: str, model: str, base_url: str | None, encoded_args: bytes | None
) -> ModelParts:
    parts = {
        "schema": canonical_json(SCHEMA_VERSION),
        "provider": canonical_json(provider),
        "model": canonical_json(model),
        "base_url": canonical_json(public_url(base_url)),
    }
    middle = b',"model":' + parts["model"]
    if encoded_args is not None:
        parts["model_args"] = encoded_args
        middle += b',"model_args":' + encoded_args
    middle += b',"provider":%s,"schema":%s' % (parts["provider"], parts["schema"])
    head = b'{"base_url":' + parts["base_url"]
    return ModelParts(f"{provider}/{model}", parts, head, middle)


def _choice_json(choice: object) -> bytes:
    if isinstance(choice, str):  # "auto", "none", "any": encoded once
        return _string_json(choice)
    if isinstance(choice, BaseModel):
        return canonical_json(choice.model_dump(mode="json"))
    return canonical_json(choice)


@functools.lru_cache(maxsize=64)
def _string_json(value: str) -> bytes:
    return canonical_json(value)


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
        _plain_material(m) or m.model_dump(mode="json", exclude=_MESSAGE_EXCLUDE, exclude_none=True)
        for m in messages
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


def _plain_material(message: ChatMessage) -> dict[str, Any] | None:
    """What `model_dump` gives for a message of plain text and nothing else, built
    directly (the common case; a test checks the two agree); None for any other."""
    others = _PLAIN_OTHERS.get(type(message))
    if others is None or type(message.content) is not str:
        return None
    for name in others:
        if getattr(message, name) is not None:
            return None
    return {"content": message.content, "role": message.role}


_PLAIN_OTHERS: dict[type[BaseModel], tuple[str, ...]] = {
    cls: tuple(n for n in cls.model_fields if n not in _MESSAGE_EXCLUDE | {"content", "role"})
    for cls in (ChatMessageSystem, ChatMessageUser, ChatMessageAssistant, ChatMessageTool)
}
"""Per message class: the fields (besides content and role) that must be None for
`_plain_material` to apply."""


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
    return _public_url(url)


@functools.lru_cache(maxsize=256)
def _public_url(url: str) -> str:
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
    # The canonical JSON object of all components, assembled from their encodings
    # in sorted order and hashed in one call.
    labels = _LABELS
    body = b",".join([(labels.get(n) or _label(n)) + parts[n] for n in sorted(parts)])
    return hashlib.sha256(b"{%s}" % body).digest()


_LABELS: dict[str, bytes] = {}
"""Component name -> its `"name":` prefix (names are few: fixed ones and config fields)."""


def _label(name: str) -> bytes:
    label = _LABELS[name] = b'"%s":' % name.encode()
    return label


def _summary(encoded: bytes) -> str:
    if len(encoded) <= _SHORT:
        return encoded.decode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()[:16]


def _message_parts(encoded: bytes) -> list[bytes]:
    return [canonical_json(m) for m in orjson.loads(encoded)]
