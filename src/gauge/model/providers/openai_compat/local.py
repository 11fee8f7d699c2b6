"""lm-eval's `local-completions` and `local-chat-completions`: any OpenAI-compatible server.

    gauge eval TASK --model local-completions \\
        -M 'model=my-model,base_url=http://localhost:8000/v1/completions,num_concurrent=10'
    gauge eval TASK --model local-chat-completions/my-model \\
        -M base_url=http://localhost:8000/v1/chat/completions

The base URL is required: the full endpoint, as lm-eval users write it, or the
base ending in /v1. The key is OPENAI_API_KEY when set (lm-eval's rule) or
`-M api_key=`; a server without authentication needs none.

`--apply_chat_template` (`-M apply_chat_template=true`) on local-completions sends
each conversation, and each scoring context, rendered by a chat template:
`-M chat_template=` (the text or a file), else the one of the local tokenizer
directory given as `-M tokenizer=`. Chat endpoints always get a conversation,
so local-chat-completions takes the flag and has nothing more to do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.providers.openai_compat.chat import OPENAI_FIELDS, OpenAIChatAPI
from gauge.model.providers.openai_compat.chat_template import ChatTemplate
from gauge.model.providers.openai_compat.completions import (
    COMPLETION_FIELDS,
    OpenAICompletionsAPI,
)
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.tools import ToolChoice, ToolInfo

_TEMPLATE_ARGS = frozenset({"apply_chat_template", "chat_template"})


def _missing_base_url(name: str, path: str) -> str:
    return (
        f"provider {name!r} needs the server's URL: -M base_url=http://localhost:8000/v1/{path} "
        "(or --model-base-url)"
    )


class LocalCompletionsAPI(OpenAICompletionsAPI):
    """`local-completions/<model>`: `/completions` on the server at base_url."""

    api_key_vars: ClassVar[tuple[str, ...] | None] = ("OPENAI_API_KEY",)
    base_url_vars: ClassVar[tuple[str, ...] | None] = ()
    default_base_url: ClassVar[str | None] = None
    honours = COMPLETION_FIELDS | {"top_k"}
    model_arg_names: ClassVar[frozenset[str]] = (
        OpenAICompletionsAPI.model_arg_names | _TEMPLATE_ARGS
    )

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        apply_chat_template: bool = False,
        chat_template: str | None = None,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, config, **model_args)
        self.template: ChatTemplate | None = None
        if apply_chat_template or chat_template:
            self.template = ChatTemplate.load(chat_template, self.scoring.tokenizer)

    @classmethod
    def missing_base_url(cls) -> str:
        return _missing_base_url(cls.name, "completions")

    def body(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> dict[str, Any]:
        body = super().body(input, tools, tool_choice, config)
        if self.template is not None:
            turns = [{"role": m.role, "content": m.text} for m in input]
            body["prompt"] = self.template.render(turns)
        return body

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        if self.template is not None:
            # lm-eval's rule: the context is the user's turn, the continuation the answer.
            render = self.template.render
            requests = [
                LoglikelihoodRequest(
                    render([{"role": "user", "content": r.context}]), r.continuation
                )
                for r in requests
            ]
        return await super().loglikelihood(requests, config)


class LocalChatCompletionsAPI(OpenAIChatAPI):
    """`local-chat-completions/<model>`: `/chat/completions` on the server at base_url."""

    api_key_vars: ClassVar[tuple[str, ...] | None] = ("OPENAI_API_KEY",)
    base_url_vars: ClassVar[tuple[str, ...] | None] = ()
    default_base_url: ClassVar[str | None] = None
    honours = OPENAI_FIELDS | {"top_k"}
    model_arg_names: ClassVar[frozenset[str]] = OpenAIChatAPI.model_arg_names | {
        "apply_chat_template"
    }

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        apply_chat_template: bool = True,
        **model_args: Any,
    ) -> None:
        # A chat endpoint always gets the conversation; the server applies its template.
        super().__init__(model_name, base_url, api_key, config, **model_args)

    @classmethod
    def missing_base_url(cls) -> str:
        return _missing_base_url(cls.name, "chat/completions")
