"""Model args that Inspect AI forwards to provider SDK clients, read the same way here.

Inspect passes `-M` args to `AsyncOpenAI`, `AsyncAnthropic`, `genai.configure`
and `MistralAsyncClient`. gauge speaks the wire formats itself, so each name is
either given the meaning the SDK gives it, or refused with what to use instead:

    default_headers={...}   headers sent with every request          (OpenAI, Anthropic)
    default_query={...}     query parameters sent with every request (OpenAI, Anthropic,
                                                                       Mistral)
    organization=, project= OpenAI-Organization / OpenAI-Project headers (OpenAI-compatible)
    auth_token=             `Authorization: Bearer` instead of x-api-key (Anthropic)
    default_metadata=[...]  (name, value) pairs sent as headers       (Google)
    client_options={api_endpoint: HOST}  the base URL                  (Google)
    transport=rest          the only transport (Google; grpc is refused)
    endpoint=, server_url=  the base URL                               (Mistral)
    timeout=, max_retries=  GenerateConfig's timeout and max_retries (gauge.model.lm_eval_args)

The refused ones (`http_client`, ...) are in REFUSED with the alternative.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gauge.errors import ConfigError

REFUSED: dict[str, str] = {
    "http_client": (
        "gauge sends requests with its own pooled HTTP client; use -M proxy=URL for a "
        "proxy and -M default_headers={...} for extra headers"
    ),
    "websocket_base_url": "gauge does not use the realtime (websocket) API; remove it",
    "max_concurrent_requests": "give max_connections (--max-connections) instead",
    "timeout_ms": "give timeout in seconds (--timeout) instead",
    "retry_config": "give max_retries (--max-retries) instead",
    "client": "gauge sends requests with its own HTTP client; remove it",
    "async_client": "gauge sends requests with its own HTTP client; remove it",
}
"""SDK client args gauge cannot honour -> what to do instead."""


def refuse_client_args(provider: str, model_args: Mapping[str, Any]) -> None:
    """Raise a one-line ConfigError for an SDK client arg gauge cannot honour."""
    for name in model_args:
        if name in REFUSED:
            raise ConfigError(f"-M {name} is not taken by provider {provider!r}: {REFUSED[name]}")


def check_client_args(provider: str, model_args: Mapping[str, Any], known: str) -> None:
    """Refuse SDK client args gauge cannot honour, then any other unknown model arg."""
    refuse_client_args(provider, model_args)
    if model_args:
        raise ConfigError(
            f"{provider} does not take model args {', '.join(sorted(model_args))}; known: {known}"
        )


def google_client(
    transport: Any, client_options: Any, default_metadata: Any, base_url: str | None, default: str
) -> tuple[str | None, dict[str, str]]:
    """(base URL, headers) from genai.configure's transport, client_options, metadata."""
    google_transport(transport)
    base_url = same_base_url("client_options", google_endpoint(client_options), base_url, default)
    return base_url, metadata_headers(default_metadata)


def string_map(name: str, value: Any) -> dict[str, str]:
    """A `{name: value}` mapping of strings (headers, query parameters), checked."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    raise ConfigError(
        f"-M {name} must be a mapping, e.g. -M {name}={{X-Team: evals}} "
        f"(a dict in Python), got {type(value).__name__}"
    )


def metadata_headers(value: Any) -> dict[str, str]:
    """Google's `default_metadata` ((name, value) pairs, or a mapping) as headers."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return string_map("default_metadata", value)
    pairs = list(value) if isinstance(value, list | tuple) else None
    if pairs is None or not all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs):
        raise ConfigError(
            "-M default_metadata must be (name, value) pairs, e.g. [[x-team, evals]], or a mapping"
        )
    return {str(k): str(v) for k, v in pairs}


def openai_headers(organization: Any, project: Any) -> dict[str, str]:
    """The headers AsyncOpenAI sends for `organization` and `project`."""
    headers = {}
    if organization:
        headers["OpenAI-Organization"] = str(organization)
    if project:
        headers["OpenAI-Project"] = str(project)
    return headers


def google_transport(value: Any) -> None:
    """Accept `transport=rest` (what gauge speaks); refuse gRPC with the alternative."""
    if value is None or str(value).lower() == "rest":
        return
    raise ConfigError(
        f"-M transport={value}: gauge talks to Gemini over REST only, with the same "
        "requests and results; remove transport, or give transport=rest"
    )


def google_endpoint(client_options: Any) -> str | None:
    """The base URL in Google's `client_options` ({api_endpoint: HOST}); others refused."""
    if client_options is None:
        return None
    if not isinstance(client_options, Mapping):
        raise ConfigError(
            "-M client_options must be a mapping such as {api_endpoint: HOST}, "
            f"got {type(client_options).__name__}"
        )
    unknown = sorted(set(client_options) - {"api_endpoint"})
    if unknown:
        raise ConfigError(
            f"-M client_options: {', '.join(unknown)} not taken; only api_endpoint is "
            "(the base URL: base_url= or GOOGLE_BASE_URL say the same)"
        )
    endpoint = str(client_options.get("api_endpoint") or "").strip()
    if not endpoint:
        return None
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def same_base_url(name: str, value: Any, base_url: str | None, default: str | None) -> str | None:
    """`value` (a client arg naming the base URL) as the base URL, unless both disagree."""
    if value is None:
        return base_url
    given = str(value).strip().rstrip("/")
    if base_url and base_url not in (default,) and base_url.rstrip("/") != given:
        raise ConfigError(f"-M {name}={value} conflicts with base URL {base_url}; give only one")
    return given
