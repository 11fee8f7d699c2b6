"""cohere/<model>: Cohere's Chat API v2 (`POST /v2/chat`), spoken directly over HTTP.

No SDK: the wire format is plain JSON and SSE, so the shared pooled aiohttp
client does the transport (and no SDK retry layer competes with the pipeline's).
COHERE_API_KEY (required), COHERE_BASE_URL (default https://api.cohere.com).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.providers._http import HttpClient, HTTPConnectionError, HTTPStatusError
from gauge.model.providers.cohere.errors import CohereError, classify
from gauge.model.providers.cohere.request import chat_body
from gauge.model.providers.cohere.response import model_output, stream_text
from gauge.model.tools import ToolChoice, ToolInfo

__all__ = ["CohereAPI", "CohereError"]


class CohereAPI(ModelAPI):
    """Cohere Chat API v2: text, images, tools, JSON schema output, streaming."""

    needs_api_key = True
    api_key_vars = ("COHERE_API_KEY",)
    base_url_vars = ("COHERE_BASE_URL",)
    default_base_url = "https://api.cohere.com"
    model_arg_names: ClassVar[frozenset[str]] = frozenset({"proxy"})
    """The model args it takes; any other name is an error."""
    supports_streaming = True
    honours = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "seed",
            "stop_seqs",
            "frequency_penalty",
            "presence_penalty",
            "logprobs",
            "response_schema",
            "extra_headers",
            "extra_body",
        }
    )

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        headers = {"Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get()}"
        proxy = model_args.get("proxy")
        self._http = HttpClient(
            base_url or self.default_base_url or "", headers, None if proxy is None else str(proxy)
        )

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        body = chat_body(self.model_name, input, tools, tool_choice, config)
        try:
            answer, headers = await self._http.post_json("v2/chat", body, config.extra_headers)
        except HTTPStatusError as ex:
            raise CohereError(ex) from None
        output = model_output(answer, self.model_name)
        output.headers = headers
        return output

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        body = chat_body(self.model_name, input, tools, tool_choice, config, stream=True)
        try:
            async for data in self._http.stream_sse("v2/chat", body, config.extra_headers):
                if isinstance(data, StreamInfo):  # the response headers
                    yield data
                    continue
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise HTTPConnectionError(
                        f"cohere sent an unreadable event: {data[:200]!r}"
                    ) from None
                text = stream_text(event)
                if text is not None:
                    yield text
        except HTTPStatusError as ex:
            raise CohereError(ex) from None

    def classify_error(self, ex: BaseException) -> RetryDecision:
        return classify(ex)

    async def close(self) -> None:
        await self._http.close()
