"""anthropic/<model>: the Anthropic Messages API over direct HTTP.

    request.py   messages, tools, config -> request body
    response.py  response body / stream events -> ModelOutput / text deltas
    errors.py    exceptions -> RetryDecision
    batch.py     Message Batches (the `batch` setting): jobs of many requests

Env: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL (default https://api.anthropic.com,
the `/v1/messages` path is appended). No SDK: one pooled aiohttp session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from gauge.errors import ConfigError
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.providers._http import HttpClient, HTTPConnectionError
from gauge.model.providers.anthropic import errors
from gauge.model.providers.anthropic.request import build_body
from gauge.model.providers.anthropic.response import parse_message, stream_text
from gauge.model.providers.client_args import refuse_client_args, string_map
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    from gauge.model.batch.api import BatchAPI

API_VERSION = "2023-06-01"
MESSAGES_PATH = "v1/messages"


class AnthropicAPI(ModelAPI):
    """Claude models through the Messages API."""

    needs_api_key = True
    api_key_vars = ("ANTHROPIC_API_KEY",)
    base_url_vars = ("ANTHROPIC_BASE_URL",)
    default_base_url = "https://api.anthropic.com"
    honours: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stop_seqs",
            "parallel_tool_calls",
            "cache_prompt",
            "reasoning_effort",
            "reasoning_history",
            "extra_headers",
            "extra_body",
        }
    )
    supports_streaming = True
    # The Messages API rejects consecutive messages of one role, and a conversation
    # holding tool_use blocks unless tools are declared. Tool results may carry
    # images, and signed thinking blocks can be replayed.
    collapse_user_messages = True
    collapse_assistant_messages = True
    tools_required = True
    tool_result_images = True
    has_reasoning_history = True

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        proxy: str | None = None,
        default_headers: dict[str, str] | None = None,
        default_query: dict[str, str] | None = None,
        **model_args: Any,
    ) -> None:
        # default_headers and default_query mean what AsyncAnthropic makes of them
        # (Inspect AI forwards -M args there): see client_args.py.
        refuse_client_args("anthropic", model_args)
        if model_args:
            raise ConfigError(
                f"anthropic does not take model args {', '.join(sorted(model_args))}; known: "
                "proxy, default_headers, default_query; use extra_headers / "
                "extra_body in the config for API extras"
            )
        super().__init__(model_name, base_url or self.default_base_url, api_key, config)
        key = self.api_key.get() if self.api_key else ""
        headers = {"x-api-key": key, "anthropic-version": API_VERSION}
        headers.update(string_map("default_headers", default_headers))
        self.default_query = string_map("default_query", default_query) or None
        self._client = HttpClient(self.base_url or "", headers, proxy)

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        body = build_body(
            self.model_name, input, tools, tool_choice, config, default_max_tokens(self.model_name)
        )
        data, headers = await self._client.post_json(
            MESSAGES_PATH, body, headers=config.extra_headers, params=self.default_query
        )
        output = parse_message(data, self.model_name)
        output.headers = headers
        return output

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        body = build_body(
            self.model_name, input, tools, tool_choice, config, default_max_tokens(self.model_name)
        )
        body["stream"] = True
        events = self._client.stream_sse(
            MESSAGES_PATH, body, headers=config.extra_headers, params=self.default_query
        )
        async for data in events:
            if isinstance(data, StreamInfo):  # the response headers
                yield data
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise HTTPConnectionError(f"unreadable stream event: {data[:200]!r}") from None
            if (text := stream_text(event)) is not None:
                yield text

    def classify_error(self, ex: BaseException) -> RetryDecision:
        return errors.classify(ex)

    def max_tokens(self) -> int | None:
        return default_max_tokens(self.model_name)

    def batch_api(self) -> BatchAPI:
        from gauge.model.providers.anthropic.batch import AnthropicBatchAPI

        return AnthropicBatchAPI(self)

    async def close(self) -> None:
        await self._client.close()


def default_max_tokens(model: str) -> int:
    """max_tokens sent when the config leaves it unset (the API requires one)."""
    if model.startswith("claude-3-5"):
        return 8192
    if model.startswith(("claude-3-opus", "claude-3-sonnet", "claude-3-haiku", "claude-2")):
        return 4096
    return 16384
