"""OpenAIChatAPI: the chat-completions client every OpenAI-compatible service shares.

It speaks the wire format directly over one pooled keep-alive aiohttp session
per instance and event loop (no SDK, so no second retry layer and ~10x less
client CPU per request). Services differ only in data: env vars, default base
URL, honoured fields, the `Dialect`, and the URL/headers hooks below.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from gauge.errors import ConfigError
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.providers._http import HttpClient, classify_http
from gauge.model.providers.client_args import (
    REFUSED,
    openai_headers,
    refuse_client_args,
    string_map,
)
from gauge.model.providers.openai_compat.request import OPENAI_DIALECT, Dialect, chat_body
from gauge.model.providers.openai_compat.response import (
    MalformedResponse,
    chat_output,
    stream_chunk,
)
from gauge.model.tools import ToolChoice, ToolInfo

CHAT_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "stop_seqs",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "parallel_tool_calls",
        "response_schema",
        "extra_headers",
        "extra_body",
    }
)
"""Fields nearly every OpenAI-compatible server takes."""

OPENAI_FIELDS = CHAT_FIELDS | {
    "logit_bias",
    "num_choices",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
}
"""Everything OpenAI's own chat-completions endpoint takes."""

_CLIENT_ARGS = (
    "max_connections",
    "api_version",
    "azure",
    "proxy",
    # AsyncOpenAI's own arguments, as Inspect AI forwards them (client_args.py)
    "default_headers",
    "default_query",
    "organization",
    "project",
    *REFUSED,
)
"""Model args the client consumes itself (the rest go into the request body)."""


class OpenAIChatAPI(ModelAPI):
    """An OpenAI-compatible `/chat/completions` endpoint at `base_url`.

    Model args not consumed by the client (e.g. `-M min_p=0.05`) are sent in
    every request body; `config.extra_body` is applied after them.
    """

    honours = OPENAI_FIELDS
    model_arg_names: ClassVar[frozenset[str]] = frozenset(_CLIENT_ARGS)
    """The model args the client reads (subclasses add theirs)."""
    model_args_go_to: ClassVar[str] = "the request body"
    """Where other model args go: `-M min_p=0.05` is sent as a body field."""
    supports_streaming = True
    dialect: ClassVar[Dialect] = OPENAI_DIALECT
    path: ClassVar[str] = "chat/completions"
    default_max_connections: ClassVar[int] = 32
    stream_text_key: ClassVar[str] = "delta"
    """Where a streamed chunk carries its text: `delta` (chat) or `text` (completions)."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        if not base_url:
            raise ConfigError(self.missing_base_url())
        refuse_client_args(type(self).name, model_args)
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self._max_connections = int(model_args.get("max_connections") or 0)
        self.default_headers = {
            **openai_headers(model_args.get("organization"), model_args.get("project")),
            **string_map("default_headers", model_args.get("default_headers")),
        }
        """Headers AsyncOpenAI would send for these model args (after authentication)."""
        self.default_query = string_map("default_query", model_args.get("default_query"))
        self.body_args = {k: v for k, v in model_args.items() if k not in _CLIENT_ARGS}
        self._client: HttpClient | None = None

    # -- hooks services override ------------------------------------------------

    @classmethod
    def missing_base_url(cls) -> str:
        """The one-line error when no base URL is configured."""
        names = " or ".join(cls.base_url_vars or ()) or "a base URL variable"
        return f"provider {cls.name!r} needs a base URL: set {names} or pass base_url="

    def scoring_unsupported(self) -> str:
        return (
            f"provider {self.name!r} speaks chat completions, which return no prompt "
            "logprobs, so it cannot score loglikelihoods; use openai-completions/<model> or "
            "openai-api-completions/<service>/<model> (a completions endpoint with "
            "echo+logprobs), vllm/ or hf/"
        )

    def wire_model(self) -> str:
        """The `model` value sent in the body."""
        return self.model_name

    def endpoint(self) -> str:
        """The path (or absolute URL) requests are posted to."""
        return self.path

    def auth_headers(self) -> dict[str, str]:
        """Headers sent with every request (authentication, organisation)."""
        return {"Authorization": f"Bearer {self.api_key.get()}"} if self.api_key else {}

    def query_params(self) -> dict[str, str] | None:
        """Query parameters sent with every request (Azure's api-version)."""
        return None

    def request_params(self) -> dict[str, str] | None:
        """The query parameters of every request: the service's, then `default_query`."""
        params = {**(self.query_params() or {}), **self.default_query}
        return params or None

    def dialect_for(self, config: GenerateConfig) -> Dialect:
        """The dialect for this request (OpenAI switches it for reasoning models)."""
        return self.dialect

    # -- the contract ------------------------------------------------------------

    @property
    def client(self) -> HttpClient:
        """The pooled HTTP client (created on first use)."""
        if self._client is None:
            proxy = self.model_args.get("proxy")
            headers = {**self.auth_headers(), **self.default_headers}
            self._client = HttpClient(
                self.base_url or "", headers, None if proxy is None else str(proxy)
            )
        return self._client

    def body(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> dict[str, Any]:
        """The request body for these arguments (exposed for tests and debugging)."""
        return chat_body(
            self.wire_model(),
            input,
            tools,
            tool_choice,
            config,
            self.dialect_for(config),
            self.body_args,
        )

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        body = self.body(input, tools, tool_choice, config)
        data, headers = await self.client.post_json(
            self.endpoint(), body, config.extra_headers, self.request_params()
        )
        output = self.output(data)
        output.headers = headers
        return output

    def output(self, data: Any) -> ModelOutput:
        """Translate a response body."""
        return chat_output(data, self.model_name)

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        body = self.body(input, tools, tool_choice, config)
        body["stream"] = True
        if self.dialect.stream_usage:
            body["stream_options"] = {"include_usage": True}
        finished = False
        events = self.client.stream_sse(
            self.endpoint(), body, config.extra_headers, self.request_params()
        )
        # aclosing: a consumer that stops early releases the connection now, not at GC.
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, StreamInfo):  # the response headers
                    yield event
                    continue
                text, info = stream_chunk(event, self.stream_text_key)
                if text:
                    yield text
                if info is not None:
                    finished = finished or info.stop_reason is not None
                    yield info
        if not finished:
            raise MalformedResponse("stream ended before a finish_reason was sent (truncated)")

    def classify_error(self, ex: BaseException) -> RetryDecision:
        decision = classify_http(ex)
        return decision if decision is not None else super().classify_error(ex)

    def max_connections(self) -> int:
        return self._max_connections or self.default_max_connections

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def env(name: str) -> str | None:
    """A non-empty environment variable, or None."""
    return os.environ.get(name) or None
