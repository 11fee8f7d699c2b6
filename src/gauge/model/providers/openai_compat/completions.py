"""The `/completions` (text completion) endpoint: lm-eval's local-completions.

    openai-completions/<model>                  OPENAI_API_KEY, OPENAI_BASE_URL
    openai-api-completions/<service>/<model>    <SERVICE>_API_KEY, <SERVICE>_BASE_URL

The conversation is sent as one prompt: the messages' texts joined by blank
lines, with no chat template (a single user message is sent verbatim). Tools
and media have no place in this format and are refused with a clear error.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gauge.errors import ConfigError, MissingAPIKey
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.providers.openai_compat.response import completion_output
from gauge.model.providers.openai_compat.scoring import CompletionsScoringAPI
from gauge.model.providers.openai_compat.services import service_settings
from gauge.model.tools import ToolChoice, ToolInfo

COMPLETION_FIELDS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "stop_seqs",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "num_choices",
        "best_of",
        "logprobs",
        "top_logprobs",
        "extra_headers",
        "extra_body",
    }
)


def completion_prompt(messages: list[ChatMessage]) -> str:
    """The prompt for a conversation: message texts joined by blank lines."""
    for message in messages:
        if isinstance(message.content, list) and any(
            part.type in ("image", "audio", "video") for part in message.content
        ):
            raise ConfigError(
                "the completions endpoint takes text only; remove images/audio/video "
                "or use a chat provider"
            )
    if len(messages) == 1:
        return messages[0].text
    return "\n\n".join(m.text for m in messages)


def completion_body(
    model: str,
    messages: list[ChatMessage],
    config: GenerateConfig,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one `POST /completions`."""
    body: dict[str, Any] = {"model": model, "prompt": completion_prompt(messages)}
    c = config
    if c.max_tokens is not None:
        body["max_tokens"] = c.max_tokens
    if c.temperature is not None:
        body["temperature"] = c.temperature
    if c.top_p is not None:
        body["top_p"] = c.top_p
    if c.stop_seqs:
        body["stop"] = list(c.stop_seqs)
    if c.seed is not None:
        body["seed"] = c.seed
    if c.frequency_penalty is not None:
        body["frequency_penalty"] = c.frequency_penalty
    if c.presence_penalty is not None:
        body["presence_penalty"] = c.presence_penalty
    if c.logit_bias:
        body["logit_bias"] = {
            str(t): int(b) if float(b).is_integer() else b for t, b in c.logit_bias.items()
        }
    if c.num_choices is not None:
        body["n"] = c.num_choices
    if c.best_of is not None:
        body["best_of"] = c.best_of
    if c.logprobs or c.top_logprobs is not None:
        # The completions endpoint takes one integer: how many alternatives per token.
        body["logprobs"] = c.top_logprobs if c.top_logprobs is not None else 1
    if c.top_k is not None:
        body["top_k"] = c.top_k
    if extra:
        body.update(extra)
    if c.extra_body:
        body.update(c.extra_body)
    return body


class OpenAICompletionsAPI(CompletionsScoringAPI):
    """`openai-completions/<model>`: `/completions` on OpenAI or OPENAI_BASE_URL.

    A key is required only for OpenAI's own endpoint; a local server set through
    OPENAI_BASE_URL or base_url= may take none.
    """

    supports_chat = False
    api_key_vars: ClassVar[tuple[str, ...] | None] = ("OPENAI_API_KEY",)
    base_url_vars: ClassVar[tuple[str, ...] | None] = ("OPENAI_BASE_URL",)
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    honours = COMPLETION_FIELDS
    path = "completions"
    stream_text_key = "text"

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        if (
            not api_key
            and self.default_base_url
            and (base_url or "").startswith(self.default_base_url)
        ):
            raise MissingAPIKey(
                f"provider {self.name!r} needs an API key for OpenAI: set OPENAI_API_KEY "
                "or pass api_key= (or point OPENAI_BASE_URL at your own server)"
            )
        super().__init__(model_name, base_url, api_key, config, **model_args)

    def body(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> dict[str, Any]:
        if tools:
            raise ConfigError(
                f"provider {self.name!r} (the completions endpoint) cannot take tools; "
                "use a chat provider such as openai/ or openai-api/"
            )
        return completion_body(self.wire_model(), input, config, self.body_args)

    def output(self, data: Any) -> ModelOutput:
        return completion_output(data, self.model_name)


class OpenAIServiceCompletionsAPI(OpenAICompletionsAPI):
    """`openai-api-completions/<service>/<model>`: `/completions` on any compatible server."""

    api_key_vars = ()
    base_url_vars = ()
    default_base_url = None
    honours = COMPLETION_FIELDS | {"top_k"}

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
