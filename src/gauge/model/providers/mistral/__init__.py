"""mistral/<model>: the Mistral chat completions API over direct HTTP.

    request.py   messages, tools, config -> request body
    response.py  response / stream chunks -> ModelOutput / text deltas
    errors.py    exceptions -> RetryDecision
    batch.py     batch jobs (the `batch` setting; not on Azure): many requests a job

Env: MISTRAL_API_KEY, MISTRAL_BASE_URL (default https://api.mistral.ai/v1).
Azure-hosted Mistral: AZURE_MISTRAL_API_KEY with AZURE_MISTRAL_BASE_URL or
AZUREAI_MISTRAL_BASE_URL (the deployment's endpoint). A base URL without a path
gets `/v1`; `/chat/completions` is appended to it.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from gauge.errors import ConfigError, UnsupportedFeature
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.providers._http import HttpClient, HTTPConnectionError, HTTPStatusError
from gauge.model.providers.client_args import refuse_client_args, same_base_url
from gauge.model.providers.mistral import errors
from gauge.model.providers.mistral.request import build_body
from gauge.model.providers.mistral.response import parse_completion, stream_text
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    from gauge.model.batch.api import BatchAPI

MISTRAL_URL = "https://api.mistral.ai/v1"
CHAT_PATH = "chat/completions"
_TRUE = ("1", "true", "yes", "on")


class MistralAPI(ModelAPI):
    """Mistral models on La Plateforme or an Azure AI deployment."""

    needs_api_key = True
    api_key_vars = ("MISTRAL_API_KEY", "AZURE_MISTRAL_API_KEY")
    base_url_vars = ("MISTRAL_BASE_URL", "AZURE_MISTRAL_BASE_URL", "AZUREAI_MISTRAL_BASE_URL")
    default_base_url = MISTRAL_URL
    honours: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "stop_seqs",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "num_choices",
            "parallel_tool_calls",
            "response_schema",
            "extra_headers",
            "extra_body",
        }
    )
    supports_streaming = True
    collapse_user_messages = True  # the API rejects consecutive user messages

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        safe_prompt: bool | str | None = None,
        proxy: str | None = None,
        endpoint: str | None = None,
        server_url: str | None = None,
        **model_args: Any,
    ) -> None:
        # MistralAsyncClient's `endpoint` (Mistral's newer client: `server_url`) is the
        # base URL, as Inspect AI forwards it (client_args.py).
        refuse_client_args("mistral", model_args)
        if model_args:
            raise ConfigError(
                f"mistral does not take model args {', '.join(sorted(model_args))}; "
                "known: safe_prompt, proxy, endpoint, server_url"
            )
        base_url = same_base_url("endpoint", endpoint, base_url, MISTRAL_URL)
        base_url = same_base_url("server_url", server_url, base_url, MISTRAL_URL)
        base_url = base_url or MISTRAL_URL
        azure_key = os.environ.get("AZURE_MISTRAL_API_KEY")
        if (
            azure_key
            and api_key == azure_key
            and not os.environ.get("MISTRAL_API_KEY")
            and base_url == MISTRAL_URL
        ):
            raise ConfigError(
                "AZURE_MISTRAL_API_KEY is set but no endpoint: set AZURE_MISTRAL_BASE_URL (or "
                "AZUREAI_MISTRAL_BASE_URL) to your Azure deployment's URL "
                "(https://<name>.<region>.models.ai.azure.com)"
            )
        super().__init__(model_name, with_version(base_url), api_key, config)
        if isinstance(safe_prompt, str):
            safe_prompt = safe_prompt.lower() in _TRUE
        self.safe_prompt = safe_prompt
        key = self.api_key.get() if self.api_key else ""
        self._client = HttpClient(
            self.base_url or MISTRAL_URL, {"Authorization": f"Bearer {key}"}, proxy
        )

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        body = build_body(self.model_name, input, tools, tool_choice, config, self.safe_prompt)
        try:
            data, headers = await self._client.post_json(
                CHAT_PATH, body, headers=config.extra_headers
            )
        except HTTPStatusError as ex:
            raise errors.with_message(ex) from None
        output = parse_completion(data, self.model_name)
        output.headers = headers
        return output

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        body = build_body(self.model_name, input, tools, tool_choice, config, self.safe_prompt)
        body["stream"] = True
        try:
            async for data in self._client.stream_sse(
                CHAT_PATH, body, headers=config.extra_headers
            ):
                if isinstance(data, StreamInfo):  # the response headers
                    yield data
                    continue
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise HTTPConnectionError(f"unreadable stream chunk: {data[:200]!r}") from None
                if text := stream_text(chunk):
                    yield text
        except HTTPStatusError as ex:
            raise errors.with_message(ex) from None

    def classify_error(self, ex: BaseException) -> RetryDecision:
        return errors.classify(ex)

    def batch_api(self) -> BatchAPI:
        from gauge.model.providers.mistral.batch import MistralBatchAPI, azure_refused

        if on_azure(self.base_url or ""):
            raise UnsupportedFeature(azure_refused())
        return MistralBatchAPI(self)

    async def close(self) -> None:
        await self._client.close()


def on_azure(base_url: str) -> bool:
    """Whether `base_url` is an Azure AI deployment (its own URL, or AZURE_MISTRAL_BASE_URL)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    azure_url = os.environ.get("AZURE_MISTRAL_BASE_URL") or os.environ.get(
        "AZUREAI_MISTRAL_BASE_URL"
    )
    return host.endswith(".azure.com") or bool(
        azure_url and with_version(azure_url) == base_url.rstrip("/")
    )


def with_version(base_url: str) -> str:
    """`base_url` with `/v1` appended when it has no path (the SDKs' convention)."""
    if urllib.parse.urlsplit(base_url).path.strip("/"):
        return base_url.rstrip("/")
    return base_url.rstrip("/") + "/v1"
