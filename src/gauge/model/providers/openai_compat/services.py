"""The OpenAI-compatible services, as data: env vars, base URLs, honoured fields.

    openai/<model>               OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID;
                                 Azure OpenAI when AZUREAI_OPENAI_API_KEY and
                                 AZUREAI_OPENAI_BASE_URL are set (model = deployment)
    together/ groq/ grok/ fireworks/ deepseek/ openrouter/ ollama/
    cf/<model>                   Cloudflare Workers AI (CLOUDFLARE_API_TOKEN + _ACCOUNT_ID)
    vllm/<model>                 a running vLLM server (VLLM_BASE_URL or base_url=)
    openai-api/<service>/<model> any server: <SERVICE>_API_KEY, <SERVICE>_BASE_URL
    azureai/<deployment>         Azure AI model inference (AZUREAI_API_KEY, AZUREAI_BASE_URL)

`honours` lists what each service documents; docs/providers-openai.md records
the sources and the assumptions made where a service's documentation is silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gauge.errors import ConfigError, MissingAPIKey, ModelNameError
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.providers.openai_compat.chat import (
    CHAT_FIELDS,
    OPENAI_FIELDS,
    OpenAIChatAPI,
    env,
)
from gauge.model.providers.openai_compat.request import Dialect
from gauge.model.providers.openai_compat.scoring import PromptLogprobsAPI
from gauge.model.tools import ToolChoice, ToolInfo
from gauge.model.urls import check_base_url

if TYPE_CHECKING:
    from gauge.model.batch.api import BatchAPI

AZURE_OPENAI_API_VERSION = "2024-10-21"
AZUREAI_API_VERSION = "2024-05-01-preview"
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
"""OpenAI model families that take max_completion_tokens and reject max_tokens."""


class OpenAIAPI(OpenAIChatAPI):
    """OpenAI, or Azure OpenAI when the AZUREAI_OPENAI_* variables are set (or azure=True)."""

    needs_api_key = True
    api_key_vars = ("OPENAI_API_KEY", "AZUREAI_OPENAI_API_KEY")
    base_url_vars = ("OPENAI_BASE_URL",)
    default_base_url = "https://api.openai.com/v1"
    honours = OPENAI_FIELDS

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        azure_arg = model_args.get("azure")
        if azure_arg is None:
            self.azure = bool(env("AZUREAI_OPENAI_API_KEY") and env("AZUREAI_OPENAI_BASE_URL"))
        else:
            self.azure = str(azure_arg).lower() in ("1", "true", "yes")
        if self.azure:
            # The factory resolved OpenAI's variables; in Azure mode Azure's win unless
            # the caller passed their own values explicitly.
            if api_key is None or api_key == env("OPENAI_API_KEY"):
                api_key = env("AZUREAI_OPENAI_API_KEY") or api_key
            if base_url in (None, env("OPENAI_BASE_URL"), self.default_base_url):
                base_url = env("AZUREAI_OPENAI_BASE_URL")
            if not api_key:
                raise MissingAPIKey(
                    "Azure OpenAI needs an API key: set AZUREAI_OPENAI_API_KEY or pass api_key="
                )
            if not base_url:
                raise ConfigError(
                    "Azure OpenAI needs its endpoint: set AZUREAI_OPENAI_BASE_URL "
                    "(https://<resource>.openai.azure.com) or pass base_url="
                )
            base_url = base_url.rstrip("/").removesuffix("/openai")
            self.api_version = str(
                model_args.get("api_version")
                or env("OPENAI_API_VERSION")
                or AZURE_OPENAI_API_VERSION
            )
        elif (
            api_key is not None
            and api_key == env("AZUREAI_OPENAI_API_KEY")
            and not env("OPENAI_API_KEY")
        ):
            raise ConfigError(
                "AZUREAI_OPENAI_API_KEY is set but AZUREAI_OPENAI_BASE_URL is not: set it to use "
                "Azure OpenAI, or set OPENAI_API_KEY to use OpenAI"
            )
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self._reasoning = is_reasoning_model(model_name)
        self._batch: BatchAPI | None = None

    def endpoint(self) -> str:
        if not self.azure:
            return self.path
        return f"openai/deployments/{self.model_name}/chat/completions"

    def query_params(self) -> dict[str, str] | None:
        return {"api-version": self.api_version} if self.azure else None

    def auth_headers(self) -> dict[str, str]:
        headers = super().auth_headers()
        if self.azure:  # AzureOpenAI sends the key as api-key, the organization as OpenAI's
            headers = {"api-key": self.api_key.get()} if self.api_key else {}
        if org := env("OPENAI_ORG_ID"):
            headers["OpenAI-Organization"] = org
        if project := env("OPENAI_PROJECT_ID"):
            headers["OpenAI-Project"] = project
        return headers

    def batch_api(self) -> BatchAPI:
        """OpenAI's (or Azure OpenAI's) files + batches endpoints (openai_compat/batch.py)."""
        if self._batch is None:
            from gauge.model.providers.openai_compat.batch import (
                AzureOpenAIBatchAPI,
                OpenAIBatchAPI,
            )

            self._batch = (AzureOpenAIBatchAPI if self.azure else OpenAIBatchAPI)(self)
        return self._batch

    def dialect_for(self, config: GenerateConfig) -> Dialect:
        if self._reasoning or config.reasoning_effort is not None:
            return _REASONING_DIALECT
        return self.dialect


_REASONING_DIALECT = Dialect(max_tokens_field="max_completion_tokens")


def is_reasoning_model(name: str) -> bool:
    """Whether `name` is an OpenAI reasoning model (o-series, gpt-5)."""
    base = name.rsplit("/", 1)[-1].lower()
    return base.startswith(REASONING_PREFIXES)


class TogetherAPI(OpenAIChatAPI):
    """Together AI (logprobs is an integer count on this service)."""

    needs_api_key = True
    default_base_url = "https://api.together.xyz/v1"
    honours = CHAT_FIELDS | {"top_k", "num_choices", "logprobs", "top_logprobs", "logit_bias"}
    dialect = Dialect(logprobs_style="int")

    def batch_api(self) -> BatchAPI:
        """Together's files + batches endpoints (openai_compat/batch_services.py)."""
        from gauge.model.providers.openai_compat.batch_services import TogetherBatchAPI

        return TogetherBatchAPI(self)


class GroqAPI(OpenAIChatAPI):
    """Groq: no logprobs, logit_bias or n > 1 (documented as 400 errors)."""

    needs_api_key = True
    default_base_url = "https://api.groq.com/openai/v1"
    honours = CHAT_FIELDS | {"reasoning_effort"}

    def batch_api(self) -> BatchAPI:
        """Groq's files + batches endpoints (openai_compat/batch_services.py)."""
        from gauge.model.providers.openai_compat.batch_services import GroqBatchAPI

        return GroqBatchAPI(self)


class GrokAPI(OpenAIChatAPI):
    """xAI's Grok models."""

    needs_api_key = True
    api_key_vars = ("GROK_API_KEY", "XAI_API_KEY")
    base_url_vars = ("GROK_BASE_URL", "XAI_BASE_URL")
    default_base_url = "https://api.x.ai/v1"
    honours = OPENAI_FIELDS - {"logit_bias"}


class FireworksAPI(OpenAIChatAPI):
    """Fireworks AI."""

    needs_api_key = True
    default_base_url = "https://api.fireworks.ai/inference/v1"
    honours = OPENAI_FIELDS | {"top_k"}


class DeepSeekAPI(OpenAIChatAPI):
    """DeepSeek: no json_schema output, seed, n or logit_bias; reasoning_content parsed."""

    needs_api_key = True
    default_base_url = "https://api.deepseek.com/v1"
    honours = CHAT_FIELDS - {"response_schema", "seed", "parallel_tool_calls"} | {
        "logprobs",
        "top_logprobs",
    }


class OpenRouterAPI(OpenAIChatAPI):
    """OpenRouter (reasoning effort travels as `reasoning: {effort}`)."""

    needs_api_key = True
    default_base_url = "https://openrouter.ai/api/v1"
    honours = CHAT_FIELDS | {"top_k", "logit_bias", "logprobs", "top_logprobs", "reasoning_effort"}

    def body(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> dict[str, Any]:
        body = super().body(input, tools, tool_choice, config)
        if (effort := body.pop("reasoning_effort", None)) is not None:
            body["reasoning"] = {"effort": effort, **body.get("reasoning", {})}
        return body


class CloudflareAPI(OpenAIChatAPI):
    """Cloudflare Workers AI's OpenAI-compatible endpoint (`cf/meta/llama-3.1-8b-instruct`)."""

    needs_api_key = True
    api_key_vars = ("CLOUDFLARE_API_TOKEN",)
    base_url_vars = ("CLOUDFLARE_BASE_URL",)
    honours = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "frequency_penalty",
            "presence_penalty",
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
        if not base_url:
            account = env("CLOUDFLARE_ACCOUNT_ID")
            if not account:
                raise ConfigError(
                    "provider 'cf' needs your account: set CLOUDFLARE_ACCOUNT_ID "
                    "(or CLOUDFLARE_BASE_URL)"
                )
            base_url = f"https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1"
        super().__init__(model_name, base_url, api_key, config, **model_args)

    def wire_model(self) -> str:
        # Workers AI model ids start with "@cf/"; users type them without the prefix.
        name = self.model_name
        return name if name.startswith("@") else f"@cf/{name}"


class OllamaAPI(OpenAIChatAPI):
    """A local Ollama server (no key needed)."""

    default_base_url = "http://localhost:11434/v1"
    honours = CHAT_FIELDS - {"parallel_tool_calls"} | {"reasoning_effort"}
    default_max_connections = 8

    def max_connections_limit(self) -> int:
        # Ollama runs OLLAMA_NUM_PARALLEL requests at once and queues the rest: more
        # in flight would only wait in its queue (and count against attempt_timeout).
        return self.max_connections()


class VLLMServerAPI(PromptLogprobsAPI):
    """A running vLLM OpenAI-compatible server (`vllm serve ...`)."""

    base_url_vars = ("VLLM_BASE_URL",)
    honours = OPENAI_FIELDS | {"top_k", "best_of"}
    dialect = Dialect(video=True)

    @classmethod
    def route(cls, base_url: str | None, model_args: dict[str, Any]) -> type[ModelAPI]:
        # Without a server to talk to, `vllm/` means the in-process engine.
        if base_url is None and cls is VLLMServerAPI:
            from gauge.model.providers.vllm_engine import VLLMAPI

            return VLLMAPI
        return cls

    @classmethod
    def missing_base_url(cls) -> str:
        return (
            "vllm/ (server mode) needs a running vLLM server: set VLLM_BASE_URL "
            "(e.g. http://localhost:8000/v1) or pass base_url="
        )


class OpenAIServiceAPI(PromptLogprobsAPI):
    """`openai-api/<service>/<model>`: any OpenAI-compatible server.

    Reads `<SERVICE>_BASE_URL` (required) and `<SERVICE>_API_KEY` (optional:
    local servers often take none); the service name is upper-cased with
    dashes as underscores. Fields a server does not take are rejected by the
    server with its own message.
    """

    api_key_vars = ()
    base_url_vars = ()
    honours = OPENAI_FIELDS | {"top_k", "best_of"}

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        self.service, model, base_url, api_key = service_settings(
            type(self).name, model_name, base_url, api_key
        )
        super().__init__(model, base_url, api_key, config, **model_args)

    def spec_name(self) -> str:
        return f"{self.service}/{self.model_name}"


def service_settings(
    provider: str, model_name: str, base_url: str | None, api_key: str | None
) -> tuple[str, str, str, str | None]:
    """(service, model, base URL, key) for `<provider>/<service>/<model>`."""
    service, sep, model = model_name.partition("/")
    if not sep or not service or not model:
        raise ModelNameError(
            f"{provider}/{model_name} must be {provider}/<service>/<model>, "
            f"e.g. {provider}/myserver/llama-3.1-8b"
        )
    prefix = service.upper().replace("-", "_").replace(".", "_")
    base_url = base_url or env(f"{prefix}_BASE_URL")
    if not base_url:
        raise ConfigError(
            f"{provider}/{service}/... needs a base URL: set {prefix}_BASE_URL or pass base_url="
        )
    check_base_url(base_url)
    return service, model, base_url, api_key or env(f"{prefix}_API_KEY")


class AzureAIAPI(OpenAIChatAPI):
    """Azure AI model inference (non-OpenAI models): `azureai/<deployment>`.

    Model args are sent in the request body; Azure rejects parameters it does not
    know unless asked to pass them through, so the `extra-parameters:
    pass-through` header is added when there are any.
    """

    needs_api_key = True
    api_key_vars = ("AZUREAI_API_KEY",)
    base_url_vars = ("AZUREAI_BASE_URL",)
    honours = CHAT_FIELDS - {"parallel_tool_calls"}

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self.api_version = str(
            model_args.get("api_version") or env("AZUREAI_API_VERSION") or AZUREAI_API_VERSION
        )

    def auth_headers(self) -> dict[str, str]:
        headers = {"api-key": self.api_key.get()} if self.api_key else {}
        if self.body_args:
            headers["extra-parameters"] = "pass-through"
        return headers

    def query_params(self) -> dict[str, str] | None:
        return {"api-version": self.api_version}
