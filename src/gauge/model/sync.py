"""A blocking facade over Model for scripts and notebooks.

Calls run on one background event loop owned by gauge, so the facade works the
same with no loop running (scripts) and inside a running loop (Jupyter).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from gauge.errors import ConfigError, one_line
from gauge.model.config import GenerateConfig
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)

if TYPE_CHECKING:
    # A SyncModel wraps the Model it is given (Model.sync() builds one): no import of
    # Model at run time, which would make model <-> sync a cycle.
    from gauge.model.model import Model

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="gauge-sync", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on gauge's background loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()


_ROLES: dict[str, type[ChatMessageSystem | ChatMessageUser | ChatMessageAssistant]] = {
    "system": ChatMessageSystem,
    "user": ChatMessageUser,
    "assistant": ChatMessageAssistant,
}


def messages_from_dicts(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """`[{"role": "user", "content": "Hi"}, ...]` as ChatMessages."""
    result: list[ChatMessage] = []
    for i, item in enumerate(messages):
        role = item.get("role") if isinstance(item, dict) else None
        cls = ChatMessageTool if role == "tool" else _ROLES.get(role)  # type: ignore[arg-type]
        if cls is None:
            raise ConfigError(
                f"message {i} needs a role of system, user, assistant or tool, got {role!r}"
            )
        try:
            result.append(cls.model_validate(item))
        except ValidationError as ex:
            raise ConfigError(f"message {i} ({role}): {one_line(ex)}") from None
    return result


class SyncModel:
    """Blocking twin of a Model: generate, chat, stream, info."""

    def __init__(self, model: Model) -> None:
        self.model = model

    @property
    def name(self) -> str:
        """The model's `provider/name`."""
        return self.model.name

    def generate(self, prompt: str, **config: Any) -> str:
        """Reply to `prompt`; keyword arguments are GenerateConfig fields."""
        output = run_sync(self.model.generate(prompt, config=_config(config)))
        return output.completion

    def chat(self, messages: list[dict[str, Any]], **config: Any) -> str:
        """Reply to a conversation given as OpenAI-style dicts."""
        output = run_sync(
            self.model.generate(messages_from_dicts(messages), config=_config(config))
        )
        return output.completion

    def stream(self, prompt: str, **config: Any) -> Iterator[str]:
        """Yield text deltas as they arrive."""
        done = object()
        deltas: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for delta in self.model.stream(prompt, config=_config(config)):
                    deltas.put(delta)
            except BaseException as ex:  # handed to the caller's thread
                deltas.put(ex)
            finally:
                deltas.put(done)

        future = asyncio.run_coroutine_threadsafe(pump(), _background_loop())
        try:
            while (item := deltas.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], **config: Any
    ) -> list[tuple[float, bool]]:
        """(summed logprob, is greedy) of each `(context, continuation)`, in order."""
        return run_sync(self.model.loglikelihood(requests, config=_config(config)))

    def loglikelihood_rolling(self, texts: Sequence[str], **config: Any) -> list[float]:
        """Loglikelihood of each whole text (for perplexity), in order."""
        return run_sync(self.model.loglikelihood_rolling(texts, config=_config(config)))

    def info(self) -> dict[str, Any]:
        """What this model is and what it supports."""
        return self.model.info()

    def close(self) -> None:
        """Close the model's clients."""
        run_sync(self.model.close())


def _config(values: dict[str, Any]) -> GenerateConfig | None:
    if not values:
        return None
    try:
        return GenerateConfig(**values)
    except ValidationError as ex:
        raise ConfigError(f"bad generate option: {one_line(ex)}") from None
