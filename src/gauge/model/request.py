"""The request that travels through the pipeline's stages, and the stage types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.retry import Attempt
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    from gauge.model.api import ModelAPI
    from gauge.model.attempt import LiveStream
    from gauge.model.rate.keys import ConnectionKey
    from gauge.model.scoring import Loglikelihood

Operation = Literal["generate", "stream", "loglikelihood", "loglikelihood_rolling"]


@dataclass(slots=True)
class ModelRequest:
    """One prepared call travelling through the pipeline."""

    input: list[ChatMessage]
    tools: list[ToolInfo]
    tool_choice: ToolChoice
    config: GenerateConfig
    attempts: list[Attempt] = field(default_factory=list)
    """Failed attempts so far (the retry stage fills it)."""
    operation: Operation = "generate"
    """What the provider is asked to do: the stages are the same for each."""
    items: list[Any] = field(default_factory=list)
    """Scoring operations: the requests or texts of one provider batch."""
    results: list[Loglikelihood] | None = None
    """Scoring operations: the provider's answer (set by the call that succeeded)."""
    key: ConnectionKey | None = None
    """The connection key the request's attempts go through (the retry stage sets it)."""
    live: LiveStream | None = None
    """Streams: the stream past its first delta (set by the attempt that got it)."""
    deadline: float | None = None
    """Streams: the monotonic time `config.timeout` ends the whole stream."""
    target: ModelAPI | None = None
    """Endpoint pools: the replica this attempt goes to (the key finder picks it)."""
    lend: bool = False
    """The last failure left the key as it was: its backoff may lend the caller's place."""


Call = Callable[[ModelRequest], Awaitable[ModelOutput]]
Stage = Callable[[Call], Call]
Sleep = Callable[[float], Awaitable[object]]
