"""TaskState: what solvers read and change while one sample is being solved."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from gauge.errors import ConfigError
from gauge.model.active import active_model
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage, ChatMessageUser
from gauge.model.model import Model
from gauge.model.output import ModelOutput


@dataclass(slots=True)
class TaskState:
    """One sample in flight: its conversation so far and the latest model output.

    A plain slotted object (not a pydantic model) so the runner can create one
    per sample without validation cost.
    """

    model: str
    sample_id: str | int
    epoch: int
    input: str | list[ChatMessage]
    messages: list[ChatMessage]
    target: list[str]
    choices: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    output: ModelOutput | None = None
    completed: bool = False
    """Set by a solver to stop the chain early."""
    store: dict[str, Any] = field(default_factory=dict)
    """Scratch space shared by the solvers and scorers of this sample."""

    @property
    def input_text(self) -> str:
        """The input as text (the last user message when the input is a conversation)."""
        if isinstance(self.input, str):
            return self.input
        for message in reversed(self.input):
            if message.role == "user":
                return message.text
        return ""

    @property
    def user_prompt(self) -> ChatMessageUser:
        """The last user message of the conversation (created when there is none)."""
        for message in reversed(self.messages):
            if isinstance(message, ChatMessageUser):
                return message
        message = ChatMessageUser(content="")
        self.messages.append(message)
        return message

    @property
    def completion(self) -> str:
        """The latest output's text ('' before any generation)."""
        return self.output.completion if self.output is not None else ""


_active_model = active_model  # the model layer's, so get_model() sees it too
active_config: ContextVar[GenerateConfig | None] = ContextVar("gauge_active_config", default=None)
"""The run's config (task < CLI) while a task runs, for solvers that call the model directly."""
_built_helpers: ContextVar[set[Model] | None] = ContextVar("gauge_built_helpers", default=None)
"""Helper models built from names during a run; the runner closes their clients at the end."""


def helper_model(model: str | Model | None, config: GenerateConfig | None = None) -> Model:
    """The model a solver or scorer calls: `model` (a name or a Model), else the evaluated one.

    A name is built with `config` as its own config: a helper never inherits the
    evaluated model's task settings.
    """
    if model is None:
        active = _active_model.get()
        if active is None:
            raise ConfigError("no model is being evaluated here; pass model= to the helper")
        return active
    from gauge.model.factory import get_model

    built = get_model(model, config=config)
    if not isinstance(model, Model) and (helpers := _built_helpers.get()) is not None:
        helpers.add(built)
    return built
