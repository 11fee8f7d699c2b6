"""google/<model>: Gemini through the Gemini API or Vertex AI, over direct HTTP.

    request.py   messages, tools, config -> generateContent body
    response.py  response / stream chunks -> ModelOutput / text deltas
    errors.py    exceptions -> RetryDecision
    auth.py      Vertex AI tokens through google-auth (the `google` extra)
    batch.py     Gemini API batch mode (the `batch` setting): jobs of many requests

Gemini API: GOOGLE_API_KEY (or GEMINI_API_KEY), GOOGLE_BASE_URL (default
https://generativelanguage.googleapis.com, `v1beta` appended unless the URL
ends in a version). Vertex AI: `-M project=P location=L [credentials=PATH]`,
or GOOGLE_GENAI_USE_VERTEXAI=true with GOOGLE_CLOUD_PROJECT /
GOOGLE_CLOUD_LOCATION; tokens come from the Google credential chain.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from gauge.errors import ConfigError, MissingAPIKey, UnsupportedFeature
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.providers._http import HttpClient, HTTPConnectionError
from gauge.model.providers.client_args import check_client_args, google_client
from gauge.model.providers.google import errors
from gauge.model.providers.google.request import build_body
from gauge.model.providers.google.response import parse_response, stream_text
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    from gauge.model.batch.api import BatchAPI

GEMINI_URL = "https://generativelanguage.googleapis.com"
HARM_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
_VERSIONED = re.compile(r"/v\d+(alpha|beta)?\d*$")
_TRUE = ("1", "true", "yes", "on")
KNOWN_MODEL_ARGS = (
    "project, location, credentials, vertex, safety_settings, proxy, transport, "
    "client_options, default_metadata"
)


class GoogleAPI(ModelAPI):
    """Gemini models (Gemini API key, or Vertex AI with Google credentials)."""

    extra = "google"
    """Only Vertex AI needs the extra (google-auth); the Gemini API needs nothing."""
    needs_api_key = False  # Vertex AI authenticates with credentials instead of a key
    api_key_vars = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    base_url_vars = ("GOOGLE_BASE_URL",)
    default_base_url = GEMINI_URL
    honours: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stop_seqs",
            "num_choices",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logprobs",
            "top_logprobs",
            "response_schema",
            "reasoning_history",
            "extra_headers",
            "extra_body",
        }
    )
    supports_streaming = True
    has_reasoning_history = True  # thought signatures go back with function calls (2.5+)

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        project: str | None = None,
        location: str | None = None,
        credentials: str | None = None,
        vertex: bool | str | None = None,
        safety_settings: str | list[dict[str, str]] | None = None,
        proxy: str | None = None,
        transport: str | None = None,
        client_options: dict[str, Any] | None = None,
        default_metadata: Any = None,
        **model_args: Any,
    ) -> None:
        check_client_args("google", model_args, KNOWN_MODEL_ARGS)
        # genai.configure's arguments, as Inspect AI forwards them (client_args.py).
        base_url, metadata = google_client(
            transport, client_options, default_metadata, base_url, GEMINI_URL
        )
        super().__init__(model_name, base_url, api_key, config)
        self.safety_settings = _safety_settings(safety_settings)
        env_vertex = os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in _TRUE
        self.vertex = bool(project or credentials or _flag(vertex) or env_vertex)
        self._auth = None
        self.project: str | None = None
        self.location: str | None = None
        if self.vertex:
            from gauge.model.providers.google.auth import VertexAuth

            self.project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
            self.location = location or os.environ.get("GOOGLE_CLOUD_LOCATION") or "us-central1"
            self._auth = VertexAuth(credentials, proxy)
            if not base_url or base_url == GEMINI_URL:
                host = "aiplatform.googleapis.com"
                if self.location != "global":
                    host = f"{self.location}-{host}"
                base_url = f"https://{host}"
            self.base_url = base_url
            prefix = "" if _VERSIONED.search(base_url.rstrip("/")) else "v1/"
            self._prefix = f"{prefix}projects/{{project}}/locations/{self.location}"
            self._prefix += "/publishers/google/models/"
            self._client = HttpClient(base_url, metadata, proxy=proxy)
        else:
            if self.api_key is None:
                raise MissingAPIKey(
                    "provider 'google' needs an API key: set GOOGLE_API_KEY or GEMINI_API_KEY, "
                    "pass api_key=, or use Vertex AI with -M project=... location=..."
                )
            base_url = base_url or GEMINI_URL
            self.base_url = base_url
            self._prefix = "" if _VERSIONED.search(base_url.rstrip("/")) else "v1beta/"
            self._prefix += "models/"
            headers = {"x-goog-api-key": self.api_key.get(), **metadata}
            self._client = HttpClient(base_url, headers, proxy)

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        body = build_body(input, tools, tool_choice, config, self.safety_settings)
        path, headers = await self._target("generateContent", config)
        data, answer_headers = await self._client.post_json(path, body, headers=headers)
        output = parse_response(data, self.model_name)
        output.headers = answer_headers
        return output

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        body = build_body(input, tools, tool_choice, config, self.safety_settings)
        path, headers = await self._target("streamGenerateContent", config)
        chunks = self._client.stream_sse(path, body, headers=headers, params={"alt": "sse"})
        async for data in chunks:
            if isinstance(data, StreamInfo):  # the response headers
                yield data
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise HTTPConnectionError(f"unreadable stream chunk: {data[:200]!r}") from None
            if text := stream_text(chunk):
                yield text

    async def _target(
        self, method: str, config: GenerateConfig
    ) -> tuple[str, dict[str, str] | None]:
        path = f"{self._prefix}{self.model_name}:{method}"
        if self._auth is None:
            return path, config.extra_headers
        token = await self._auth.token()
        project = self.project or await self._auth.default_project()
        if not project:
            raise ConfigError(
                "Vertex AI needs a project: pass -M project=... or set GOOGLE_CLOUD_PROJECT"
            )
        headers = {"Authorization": f"Bearer {token}", **(config.extra_headers or {})}
        return path.replace("{project}", project, 1), headers

    def classify_error(self, ex: BaseException) -> RetryDecision:
        auth_error = _auth_decision(ex)
        return auth_error if auth_error is not None else errors.classify(ex)

    def batch_api(self) -> BatchAPI:
        from gauge.model.providers.google.batch import GeminiBatchAPI, vertex_refused

        if self.vertex:
            raise UnsupportedFeature(vertex_refused())
        return GeminiBatchAPI(self)

    def connection_key(self) -> str:
        if self.vertex:
            return f"google|vertex|{self.project}|{self.location}|{self.model_name}"
        return super().connection_key()

    async def close(self) -> None:
        await self._client.close()


def _auth_decision(ex: BaseException) -> RetryDecision | None:
    module = type(ex).__module__
    if not module.startswith("google.auth"):
        return None
    retryable = getattr(ex, "retryable", False) or type(ex).__name__ == "TransportError"
    return RetryDecision("transient" if retryable else "fatal")


def _flag(value: bool | str | None) -> bool:
    if isinstance(value, str):
        return value.lower() in _TRUE
    return bool(value)


def _safety_settings(value: str | list[dict[str, str]] | None) -> list[dict[str, str]] | None:
    """A threshold name (BLOCK_NONE, ...) for every category, or explicit settings."""
    if value is None or isinstance(value, list):
        return value
    if not re.fullmatch(r"[A-Z_]+", value):
        raise ConfigError(
            f"google safety_settings must be a threshold such as BLOCK_NONE or "
            f"BLOCK_ONLY_HIGH, or a list of {{category, threshold}}; got {value!r}"
        )
    return [{"category": c, "threshold": value} for c in HARM_CATEGORIES]
