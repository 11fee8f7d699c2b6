"""`cache explain`: would this request hit, and if not, which entry is nearest?

A request is a mapping (from a JSON/YAML file, or one sample line of an eval
journal):

    {model: provider/name, input: str | [messages], tools: [...], tool_choice,
     config: {...}, base_url, epoch, cache: policy}

It goes through the same preparation as `Model.generate` (config layering,
system message, the provider's message rules), so the key is the one a run
would compute. On a miss the nearest entry is the stored entry of the same
model with the fewest differing key components (ties: most equal, then newest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gauge.errors import ConfigError, MissingAPIKey, one_line
from gauge.model.cache.api import open_store
from gauge.model.cache.key import CacheKey, compare, request_key
from gauge.model.cache.policy import CachePolicy, as_policy
from gauge.model.cache.stage import is_fresh
from gauge.model.config import GenerateConfig
from gauge.model.tools import ToolFunction, ToolInfo

_PLACEHOLDER_KEY = "gauge-cache-explain"
"""Stands in for a missing API key: keys never enter the cache key, so any value works."""


@dataclass(slots=True)
class Nearest:
    """The stored entry closest to a request that missed."""

    key: str
    created: float
    equal: int
    total: int
    differences: list[str]


@dataclass(slots=True)
class Explanation:
    """Whether one request hits the cache, and why not."""

    model: str
    key: str
    hit: bool
    reason: str
    epoch: int | None = None
    sample: str | None = None
    created: float | None = None
    nearest: Nearest | None = None
    entries: int = 0
    """Entries stored for this model."""
    components: dict[str, Any] = field(default_factory=dict)


def cache_explain(request: dict[str, Any], now: float | None = None) -> Explanation:
    """Explain whether `request` (see the module docstring) hits the cache."""
    key, policy, epoch = build_key(request)
    now = time.time() if now is None else now
    store = open_store()  # Redis with the shared cache on, else the local file
    try:
        result = Explanation(key.model, key.hex, False, "", epoch=epoch)
        result.components = key.fingerprint()
        found = store.entry(key.digest)
        if found is not None:
            _, created, _, _ = found
            result.created = created
            if is_fresh(created, policy, now):
                result.hit = True
                result.reason = "an entry with this key is stored and fresh"
                return result
            result.reason = (
                f"the entry with this key is {_age(now - created)} old, "
                f"older than the expiry {policy.expiry}; the next run replaces it"
            )
            return result
        best: Nearest | None = None
        for stored_key, created, _, fingerprint in store.fingerprints(key.model):
            result.entries += 1
            equal, differences = compare(result.components, orjson.loads(fingerprint))
            total = equal + len(differences)
            # Fewest differences first, then most equal components, then the newest.
            rank = (-len(differences), equal, created)
            if best is None or rank > (-len(best.differences), best.equal, best.created):
                best = Nearest(stored_key.hex(), created, equal, total, differences)
        result.nearest = best
        result.reason = (
            f"no entry has this key, and no entry is stored for {key.model}"
            if best is None
            else "no entry has this key"
        )
        return result
    finally:
        store.close()


def explain_log(path: Path, sample: str, epoch: int | None = None) -> list[Explanation]:
    """Explain each sample line of journal `path` for `sample` (and `epoch`, if given).

    Sample lines take what they lack (config, base URL) from the journal's header.
    """
    results = []
    for line in journal_requests(path):
        if str(line.get("id")) == sample and (epoch is None or line.get("epoch") == epoch):
            explanation = cache_explain(line)
            explanation.sample = sample
            results.append(explanation)
    if not results:
        which = f"sample {sample!r}" + ("" if epoch is None else f" epoch {epoch}")
        raise ConfigError(f"{path}: no line for {which}; check the id with the journal")
    return results


def journal_requests(path: Path) -> list[dict[str, Any]]:
    """Requests from a JSONL journal's sample lines, completed from its header line.

    A sample line gives id, epoch, model and input (or `messages`, the messages
    actually sent, when the runner records them); config, tools, tool_choice and
    base_url come from the line, else from the preceding header ("resolved_config"
    or "config", and "model"."base_url").
    """
    header: dict[str, Any] = {}
    requests = []
    for line in read_journal(path):
        kind = line.get("type", "sample")
        if kind == "header":
            header = line
            continue
        if kind != "sample" or "id" not in line:
            continue
        model_info = header.get("model")
        info: dict[str, Any] = model_info if isinstance(model_info, dict) else {}
        request = dict(line)
        # A sample line's "cache" is the outcome (hit/miss), not a policy.
        request.pop("cache", None)
        if "messages" in line:
            request["input"] = line["messages"]
        if not isinstance(request.get("model"), str):
            request["model"] = info.get("name")
        if request.get("config") is None:
            request["config"] = header.get("resolved_config") or header.get("config") or {}
        if request.get("base_url") is None:
            request["base_url"] = info.get("base_url")
        if request.get("model_args") is None and isinstance(header.get("model_args"), dict):
            # Redacted values are secrets: they are not part of a key anyway.
            request["model_args"] = {
                k: v
                for k, v in header["model_args"].items()
                if not (isinstance(v, str) and "********" in v)
            }
        requests.append(request)
    return requests


def load_request(path: Path) -> dict[str, Any]:
    """A request mapping from a JSON or YAML file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as ex:
        raise ConfigError(f"cannot read {path}: {ex.strerror}") from None
    except yaml.YAMLError as ex:
        raise ConfigError(f"{path}: not valid JSON/YAML ({one_line(ex)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with model and input")
    return data


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL journal, one per non-empty line."""
    try:
        text = path.read_bytes()
    except OSError as ex:
        raise ConfigError(f"cannot read journal {path}: {ex.strerror}") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{path}:{number}: not a JSON line") from None
        if isinstance(line, dict):
            lines.append(line)
    return lines


def build_key(request: dict[str, Any]) -> tuple[CacheKey, CachePolicy, int | None]:
    """The cache key a run would compute for `request`, its policy and epoch."""
    from pydantic import TypeAdapter

    from gauge.model.factory import get_model
    from gauge.model.messages import ChatMessage

    name = request.get("model")
    if not isinstance(name, str) or not name:
        raise ConfigError("the request needs 'model: provider/name'")
    if "input" not in request:
        raise ConfigError("the request needs 'input': a prompt or a list of messages")
    try:
        config = GenerateConfig(**(request.get("config") or {}))
        raw_input = request["input"]
        input: Any = (
            raw_input
            if isinstance(raw_input, str)
            else TypeAdapter(list[ChatMessage]).validate_python(raw_input)
        )
        tools = [ToolInfo.model_validate(t) for t in request.get("tools") or ()]
        choice: Any = request.get("tool_choice")
        if isinstance(choice, dict):
            choice = ToolFunction.model_validate(choice)
    except ValueError as ex:
        raise ConfigError(f"request: {one_line(ex)}") from None
    policy = as_policy(request.get("cache", config.cache)) or CachePolicy()
    epoch = request.get("epoch")
    if epoch is not None and not isinstance(epoch, int):
        raise ConfigError(f"request: epoch must be an integer, got {epoch!r}")
    base_url = request.get("base_url")
    model_args = request.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise ConfigError("request: model_args must be a mapping of -M arguments")
    try:
        model = get_model(name, config=config, base_url=base_url, memoize=False, **model_args)
    except MissingAPIKey:
        model = get_model(
            name,
            config=config,
            base_url=base_url,
            api_key=_PLACEHOLDER_KEY,
            memoize=False,
            **model_args,
        )
    prepared = model._request(input, tools, choice, None)
    api = model.api
    key = request_key(
        api.name,
        api.model_name,
        api.base_url,
        prepared.input,
        prepared.tools,
        prepared.tool_choice,
        prepared.config,
        policy,
        epoch=epoch or 0,
        model_args=api.model_args,
    )
    return key, policy, (epoch or 0) if policy.per_epoch else None


def _age(seconds: float) -> str:
    for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"
