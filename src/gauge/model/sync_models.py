"""insideLLMs-style model classes, each a thin SyncModel over `get_model`.

    OpenAIModel(model_name="gpt-4o", temperature=0.7)      -> get_model("openai/gpt-4o", ...)
    DummyModel(response="test response")                    -> mock/dummy answering that text
    model_registry.get("openai", model_name="gpt-4o")      -> the same as OpenAIModel(...)

Keyword arguments that are GenerateConfig fields become the model's default
config; `base_url` and `api_key` go to `get_model`; anything else is a provider
model arg (an unknown one is the usual one-line error). Every call then runs
through the one pipeline (cache, retries, rate control), as any gauge model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gauge.errors import ConfigError, one_line
from gauge.model.config import GenerateConfig
from gauge.model.factory import get_model, model_from_config
from gauge.model.registry import provider_names
from gauge.model.sync import SyncModel


class ProviderModel(SyncModel):
    """A SyncModel for one provider, built from insideLLMs-style keyword arguments."""

    provider: ClassVar[str] = ""
    default_model: ClassVar[str | None] = None
    """The model used when `model_name` is not given (None: it must be given)."""

    def __init__(
        self,
        model_name: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        name = model_name or self.default_model
        if not name:
            raise ConfigError(
                f"{type(self).__name__} needs model_name=, e.g. "
                f'{type(self).__name__}(model_name="<{self.provider} model>")'
            )
        config, model_args = split_config(kwargs)
        super().__init__(
            get_model(
                f"{self.provider}/{name}",
                config=config,
                base_url=base_url,
                api_key=api_key,
                **model_args,
            )
        )


def split_config(kwargs: dict[str, Any]) -> tuple[GenerateConfig, dict[str, Any]]:
    """(GenerateConfig from the keyword arguments that are its fields, the rest)."""
    fields = {k: v for k, v in kwargs.items() if k in GenerateConfig.model_fields}
    rest = {k: v for k, v in kwargs.items() if k not in fields}
    try:
        return GenerateConfig(**fields), rest
    except ValueError as ex:
        raise ConfigError(f"bad generate option: {one_line(ex)}") from None


class OpenAIModel(ProviderModel):
    """OpenAI (`openai/<model_name>`; OPENAI_API_KEY)."""

    provider = "openai"


class AnthropicModel(ProviderModel):
    """Anthropic (`anthropic/<model_name>`; ANTHROPIC_API_KEY)."""

    provider = "anthropic"


class GeminiModel(ProviderModel):
    """Google Gemini (`google/<model_name>`; GOOGLE_API_KEY)."""

    provider = "google"


class CohereModel(ProviderModel):
    """Cohere (`cohere/<model_name>`; CO_API_KEY)."""

    provider = "cohere"


class HuggingFaceModel(ProviderModel):
    """A local transformers model (`hf/<model_name>`), the bundled one by default."""

    provider = "hf"
    default_model = "gauge-tiny"


class HuggingFaceInferenceModel(ProviderModel):
    """Hugging Face's hosted inference (`hf-inference-providers/<model_name>`; HF_TOKEN)."""

    provider = "hf-inference-providers"


class TGIModel(ProviderModel):
    """A text-generation-inference server (`tgi/<model_name>`; TGI_BASE_URL)."""

    provider = "tgi"
    default_model = "tgi"


class OllamaModel(ProviderModel):
    """A local Ollama server (`ollama/<model_name>`)."""

    provider = "ollama"


class VLLMModel(ProviderModel):
    """vLLM: a server at VLLM_BASE_URL / base_url=, else the in-process engine."""

    provider = "vllm"


class LlamaCppModel(ProviderModel):
    """A llama.cpp server (`llama-cpp/<model_name>`; LLAMA_CPP_BASE_URL)."""

    provider = "llama-cpp"
    default_model = "default"


class DummyModel(SyncModel):
    """An offline model answering `response` to every call (echoing the prompt without one)."""

    def __init__(self, response: str | None = None, name: str = "dummy", **kwargs: Any) -> None:
        config, model_args = split_config(kwargs)
        if response is not None:
            if not isinstance(response, str):
                raise ConfigError(
                    f"DummyModel response= must be text, got {type(response).__name__}"
                )
            model_args["outputs"] = _Constant(response)
        # Not memoized: two DummyModels with different responses are different models.
        super().__init__(get_model(f"mock/{name}", config=config, memoize=False, **model_args))


class _Constant:
    """The same text for every call (mock's `outputs=` callable form)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, *args: Any) -> str:
        return self.text


class ModelRegistry:
    """insideLLMs' `model_registry`: `get(type, **args)` builds a model by provider name."""

    def get(self, type: str, **args: Any) -> SyncModel:
        """The model `{type: <type>, args: {...}}` describes in a config file."""
        if type == "dummy":
            return DummyModel(**args)
        return SyncModel(model_from_config({"type": type, "args": args}))

    def list(self) -> list[str]:
        """Every provider name `get` accepts (gauge's providers, plugins included)."""
        return sorted({*provider_names(), "dummy"})


model_registry = ModelRegistry()


def ensure_builtins_registered() -> list[str]:
    """Load the provider registry and return its names.

    gauge registers built-in providers on first lookup, so this is only needed by
    code written for insideLLMs, where it must be called before `model_registry.get`.
    """
    return model_registry.list()
