"""bedrock/<model-id>: Amazon Bedrock's Converse API, signed with SigV4 by botocore.

botocore does what it is good at (the AWS credential chain and SigV4 signing);
the request itself goes through the shared pooled aiohttp client as Converse
JSON, so no SDK retry layer or per-call SDK machinery sits in the hot path.

Model ids: Anthropic, Meta, Mistral (and other Converse models), plain
(`anthropic.claude-3-5-haiku-20241022-v1:0`), cross-region inference profiles
(`us.anthropic...`) or ARNs. Region: -M region=, AWS_DEFAULT_REGION, the
profile's region, or AWS_REGION. Profile: -M profile= or AWS_PROFILE.
BEDROCK_BASE_URL overrides the endpoint. AWS_BEARER_TOKEN_BEDROCK (a Bedrock
API key), when set, is sent as a bearer token instead of SigV4.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gauge.errors import ConfigError
from gauge.model.api import ModelAPI, RetryDecision
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.providers._http import HttpClient, HTTPConnectionError
from gauge.model.providers.bedrock.auth import AwsAuth, MissingAWSCredentials
from gauge.model.providers.bedrock.errors import BedrockError, classify, from_response
from gauge.model.providers.bedrock.request import converse_body, model_family
from gauge.model.providers.bedrock.response import EventDecoder, model_output, stream_text
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    import aiohttp

__all__ = ["BedrockAPI", "BedrockError", "MissingAWSCredentials"]

_JSON = "application/json"
_EVENT_STREAM = "application/vnd.amazon.eventstream"


class BedrockAPI(ModelAPI):
    """Bedrock Converse and ConverseStream: text, images, tools, reasoning replay."""

    extra = "bedrock"
    requires = ("botocore",)
    needs_api_key = False
    api_key_vars = ("AWS_BEARER_TOKEN_BEDROCK",)
    base_url_vars = ("BEDROCK_BASE_URL",)
    default_base_url = "https://bedrock-runtime.{region}.amazonaws.com"
    supports_streaming = True
    # Converse rejects consecutive messages of one role, and tool blocks without toolConfig.
    collapse_user_messages = True
    collapse_assistant_messages = True
    tools_required = True
    honours = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stop_seqs",
            "cache_prompt",
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
        region: str | None = None,
        profile: str | None = None,
        proxy: str | None = None,
        **model_args: Any,
    ) -> None:
        if model_args:
            raise ConfigError(
                f"bedrock takes the model args proxy=, region= and profile=, not "
                f"{', '.join(sorted(model_args))}"
            )
        super().__init__(model_name, base_url, api_key, config)
        self._auth = AwsAuth(profile or None, region or None, proxy)
        template = base_url or self.default_base_url or ""
        self.base_url = template.replace("{region}", self._auth.region).rstrip("/")
        self._http = HttpClient(self.base_url, proxy=proxy)
        # Model ids hold ':' and ARNs '/': encoded as botocore encodes a URI label.
        path = f"{self.base_url}/model/{quote(model_name, safe='-._~')}"
        self._converse_url = f"{path}/converse"
        self._stream_url = f"{path}/converse-stream"
        self._family = model_family(model_name)
        # Only Anthropic models on Bedrock replay their (signed) reasoning.
        self.has_reasoning_history = self._family == "anthropic"

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        data = orjson.dumps(converse_body(self.model_name, input, tools, tool_choice, config))
        headers = await self._headers(self._converse_url, data, _JSON, config.extra_headers)
        import aiohttp

        try:
            async with self._post(self._converse_url, data, headers) as response:
                raw = await response.read()
                if response.status >= 300:
                    raise from_response(response.status, raw, response.headers)
        except aiohttp.ClientError as ex:
            raise self._http.connection_error(ex, self._converse_url) from ex
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HTTPConnectionError(
                f"bedrock answered with a body that is not JSON: {raw[:200]!r}"
            ) from None
        return model_output(answer, self.model_name)

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str]:
        data = orjson.dumps(converse_body(self.model_name, input, tools, tool_choice, config))
        headers = await self._headers(self._stream_url, data, _EVENT_STREAM, config.extra_headers)
        import aiohttp

        try:
            async with self._post(self._stream_url, data, headers) as response:
                if response.status >= 300:
                    raise from_response(response.status, await response.read(), response.headers)
                decoder = EventDecoder()
                async for chunk in response.content.iter_any():
                    for event, payload in decoder.feed(chunk):
                        text = stream_text(event, payload)
                        if text is not None:
                            yield text
        except aiohttp.ClientError as ex:
            raise self._http.connection_error(ex, self._stream_url) from ex

    async def _headers(
        self, url: str, data: bytes, accept: str, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {"Content-Type": _JSON, "Accept": accept, **(extra or {})}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get()}"
            return headers
        credentials = await self._auth.credentials()
        # Extra headers are signed too, so a proxy or AWS cannot tell them from ours.
        return self._auth.sign(credentials, url, data, headers)

    def _post(self, url: str, data: bytes, headers: dict[str, str]) -> Any:
        import yarl

        # encoded=True: send the path exactly as signed (yarl would decode %3A to ':').
        session: aiohttp.ClientSession = self._http.session()
        return session.post(
            yarl.URL(url, encoded=True), data=data, headers=headers, proxy=self._http.proxy_url(url)
        )

    def classify_error(self, ex: BaseException) -> RetryDecision:
        return classify(ex)

    def connection_key(self) -> str:
        return f"bedrock|{self.base_url}|{self._auth.profile or ''}|{self.model_name}"

    async def close(self) -> None:
        await self._http.close()
