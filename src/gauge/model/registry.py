"""Provider registry: built-ins, `@modelapi` registrations and entry-point plugins.

Nothing is imported until it is asked for: built-ins are "module:Class" strings,
`@modelapi` accepts a class or a zero-argument factory returning one, and
third-party providers come from the entry-point group ``gauge.providers``.
Lookup order: `@modelapi` registrations, built-ins, entry points.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

from gauge.errors import MissingExtra, UnknownProvider, one_line
from gauge.model.api import ModelAPI

ENTRY_POINT_GROUP = "gauge.providers"

BUILTINS: dict[str, str] = {
    "mock": "gauge.model.providers.mock:MockAPI",
    "hf": "gauge.model.providers.hf:HuggingFaceAPI",
    "openai": "gauge.model.providers.openai_compat.services:OpenAIAPI",
    "together": "gauge.model.providers.openai_compat.services:TogetherAPI",
    "groq": "gauge.model.providers.openai_compat.services:GroqAPI",
    "grok": "gauge.model.providers.openai_compat.services:GrokAPI",
    "fireworks": "gauge.model.providers.openai_compat.services:FireworksAPI",
    "deepseek": "gauge.model.providers.openai_compat.services:DeepSeekAPI",
    "openrouter": "gauge.model.providers.openai_compat.services:OpenRouterAPI",
    "cf": "gauge.model.providers.openai_compat.services:CloudflareAPI",
    "ollama": "gauge.model.providers.openai_compat.services:OllamaAPI",
    "vllm": "gauge.model.providers.openai_compat.services:VLLMServerAPI",
    "openai-api": "gauge.model.providers.openai_compat.services:OpenAIServiceAPI",
    "hf-inference-providers": (
        "gauge.model.providers.openai_compat.inference_servers:HFInferenceProvidersAPI"
    ),
    "tgi": "gauge.model.providers.openai_compat.inference_servers:TGIAPI",
    "llama-cpp": "gauge.model.providers.openai_compat.inference_servers:LlamaCppAPI",
    "azureai": "gauge.model.providers.openai_compat.services:AzureAIAPI",
    "openai-completions": "gauge.model.providers.openai_compat.completions:OpenAICompletionsAPI",
    "openai-api-completions": (
        "gauge.model.providers.openai_compat.completions:OpenAIServiceCompletionsAPI"
    ),
    "local-completions": "gauge.model.providers.openai_compat.local:LocalCompletionsAPI",
    "local-chat-completions": "gauge.model.providers.openai_compat.local:LocalChatCompletionsAPI",
    "bedrock": "gauge.model.providers.bedrock:BedrockAPI",
    "cohere": "gauge.model.providers.cohere:CohereAPI",
    "anthropic": "gauge.model.providers.anthropic:AnthropicAPI",
    "google": "gauge.model.providers.google:GoogleAPI",
    "mistral": "gauge.model.providers.mistral:MistralAPI",
}
"""Built-in providers: name -> "module:Class" (modules import their SDKs lazily)."""

Factory = Callable[[], type[ModelAPI]]
_registered: dict[str, type[ModelAPI] | Factory] = {}
_loaded: dict[str, type[ModelAPI]] = {}

T = TypeVar("T", bound=type[ModelAPI] | Factory)


def modelapi(name: str) -> Callable[[T], T]:
    """Register a ModelAPI class (or a zero-argument factory returning one) as `name`."""
    if not name or "/" in name:
        raise ValueError(f"provider name {name!r} must be non-empty and contain no '/'")

    def register(target: T) -> T:
        _registered[name] = target
        _loaded.pop(name, None)
        return target

    return register


def unregister(name: str) -> None:
    """Remove a `@modelapi` registration (tests use this to undo their fakes)."""
    _registered.pop(name, None)
    _loaded.pop(name, None)


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def provider_names() -> list[str]:
    """Every known provider name, sorted."""
    return sorted({*_registered, *BUILTINS, *_entry_points()})


def provider_class(name: str) -> type[ModelAPI]:
    """The ModelAPI class for provider `name` (imports its module on first use)."""
    if (cls := _loaded.get(name)) is not None:
        return cls
    if name in _registered:
        target = _registered[name]
        cls = target if isinstance(target, type) else _call_factory(name, target)
    elif name in BUILTINS:
        cls = _load(name, BUILTINS[name])
    elif name in _entry_points():
        cls = _load(name, _entry_points()[name].value)
    else:
        raise UnknownProvider(_unknown_message(name))
    if not (isinstance(cls, type) and issubclass(cls, ModelAPI)):
        raise UnknownProvider(f"provider {name!r} did not resolve to a ModelAPI subclass")
    # Look in the class's own namespace: a subclass of a registered provider must
    # not inherit its parent's registered name.
    if not cls.__dict__.get("name"):
        cls.name = name
    _loaded[name] = cls
    return cls


def check_installed(name: str, cls: type[ModelAPI]) -> None:
    """Raise MissingExtra when a module the provider requires cannot be imported."""
    missing = [mod for mod in cls.requires if not is_importable(mod)]
    if missing:
        raise MissingExtra(_extra_message(name, cls.extra, missing[0]))


def is_importable(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _call_factory(name: str, factory: Factory) -> type[ModelAPI]:
    try:
        return factory()
    except ModuleNotFoundError as exc:
        if exc.name and not _is_gauge_module(exc.name):
            raise MissingExtra(_extra_message(name, None, exc.name)) from exc
        raise


def _is_gauge_module(module: str) -> bool:
    return module == "gauge" or module.startswith("gauge.")


def _load(name: str, target: str) -> type[ModelAPI]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Our own module missing is a bug or a broken install; a third-party one is an extra.
        if exc.name and not _is_gauge_module(exc.name):
            raise MissingExtra(_extra_message(name, None, exc.name)) from exc
        raise UnknownProvider(f"provider {name!r} failed to load from {target}: {exc}") from exc
    except Exception as exc:  # a broken plugin is an error naming it, not a traceback
        raise UnknownProvider(
            f"provider {name!r} failed to load from {target}: {one_line(exc)}"
        ) from exc
    try:
        cls: type[ModelAPI] = getattr(module, attr)
    except AttributeError as exc:
        raise UnknownProvider(f"provider {name!r}: {module_name} has no {attr!r}") from exc
    return cls


def _extra_message(name: str, extra: str | None, module: str) -> str:
    if extra:
        return f"provider {name!r} needs {module!r}: pip install 'gauge[{extra}]'"
    return f"provider {name!r} needs {module!r}: pip install {module}"


def _unknown_message(name: str) -> str:
    known = provider_names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown provider {name!r}{hint}; known providers: {', '.join(known)}"
