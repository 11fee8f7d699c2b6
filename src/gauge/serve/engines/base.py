"""The engine contract: what the server asks of a model, and what it gets back.

An engine turns one `EngineRequest` (a chat or a raw prompt, with its sampling
parameters) into an `EngineResult` (choices with text, token counts, finish
reasons and, when asked, per-token logprobs and the prompt's own logprobs).
`honours` lists the request fields beyond the basics that the engine
implements; `schemas` refuses any other field set to a non-neutral value.

Engines also expose their tokenizer (`tokenize`, `detokenize`, `token_texts`)
for the /tokenize and /detokenize routes, so a client can tokenize exactly as
the server scores.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from gauge.errors import ConfigError
from gauge.model.messages import ChatMessage

if TYPE_CHECKING:
    from gauge.serve.settings import Settings

BASIC_FIELDS = frozenset(
    {"max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "logprobs"}
)
"""Fields every engine honours."""


@dataclass(slots=True)
class SamplingParams:
    """Sampling parameters in vLLM's vocabulary (neutral defaults mean "off")."""

    max_tokens: int | None = None
    """0: generate nothing (only score the prompt: `EngineRequest.prompt_logprobs`)."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float = 0.0
    n: int = 1
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None
    """None: no logprobs; k >= 0: the chosen token's logprob and k alternatives."""
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    use_beam_search: bool = False
    best_of: int | None = None
    """Beam search: the beam width (default n); otherwise only n is accepted."""
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    """Beam search's stopping rule: True, False or "never" (vLLM's values)."""


@dataclass(slots=True)
class EngineRequest:
    """One request: `messages` (chat) or `prompt` (text or token ids)."""

    sampling: SamplingParams
    messages: list[ChatMessage] | None = None
    prompt: str | list[int] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    """Template the final (assistant) message without closing it, so it is continued."""
    echo: bool = False
    """Prepend the prompt's text (completions) or `echo_text` (chat) to each choice."""
    echo_text: str = ""
    """Chat only: what echo prepends (vLLM: the last message, when its role is the reply's)."""
    prompt_logprobs: int | None = None
    """None: none; k >= 0: each prompt token's logprob, rank and the top k alternatives."""


@dataclass(slots=True)
class TokenInfo:
    """One generated token: its text, logprob and top alternatives (text, logprob)."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]] = field(default_factory=list)


@dataclass(slots=True)
class PromptLogprob:
    """One prompt token: its logprob given the tokens before it (None for the first)."""

    token_id: int
    token: str
    """The token's text (its exact bytes decoded; special tokens keep their literal text)."""
    logprob: float | None
    rank: int | None
    """1 for the most likely token at this position."""
    top: list[tuple[int, str, float, int]] = field(default_factory=list)
    """The top k alternatives as (token id, text, logprob, rank), most likely first."""
    special: bool = False
    """A special token (BOS, template markers): absent from text decoded without them."""


@dataclass(slots=True)
class Choice:
    """One generated alternative."""

    text: str
    finish_reason: str
    """"stop" or "length"."""
    tokens: int
    logprobs: list[TokenInfo] | None = None


@dataclass(slots=True)
class EngineResult:
    """A request's choices and its token usage."""

    prompt_tokens: int
    choices: list[Choice]
    queue_time: float = 0.0
    """Seconds the request waited before the engine started it."""
    prompt_logprobs: list[PromptLogprob] | None = None
    """Every prompt token, when the request asked for prompt logprobs."""

    @property
    def completion_tokens(self) -> int:
        """Generated tokens over all choices."""
        return sum(c.tokens for c in self.choices)


@dataclass(slots=True)
class Delta:
    """A piece of one choice while streaming; the last piece of a choice has finish_reason."""

    index: int
    text: str
    finish_reason: str | None = None
    logprobs: list[TokenInfo] | None = None


@dataclass(slots=True)
class TokenizeRequest:
    """A /tokenize body: `prompt` (text) or `messages` (templated as chat requests are)."""

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool | None = None
    """None: as generation does (a text prompt gets the tokenizer's special tokens, a
    chat template holds its own); True/False forces adding them or not."""


@dataclass(slots=True)
class Phases:
    """Start-up phase timings in seconds (None until the phase ran)."""

    load: float | None = None
    warmup: float | None = None


class Engine(abc.ABC):
    """A model that the server and the worker call."""

    name: ClassVar[str]
    honours: ClassVar[frozenset[str]] = BASIC_FIELDS
    uses_settings: ClassVar[frozenset[str]] = frozenset()
    """Settings (their env var names) this engine reads; start-up lists the others set."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.state = "starting"
        self.phases = Phases()
        self.created = int(time.time())
        self.max_model_len: int | None = None

    async def start(self) -> None:
        """Load and warm up, recording the phase timings, then mark the engine ready."""
        began = time.perf_counter()
        self.state = "loading"
        await self.load()
        loaded = time.perf_counter()
        self.phases.load = loaded - began
        self.state = "warming_up"
        await self.warmup()
        self.phases.warmup = time.perf_counter() - loaded
        self.state = "ready"

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """Build the engine from server settings (cheap: the model loads in `start`)."""

    @abc.abstractmethod
    async def load(self) -> None:
        """Load the model."""

    async def warmup(self) -> None:
        """Run one tiny request so the first real one pays no one-off costs."""
        await self.generate(EngineRequest(SamplingParams(max_tokens=1), prompt="warm up"))

    @abc.abstractmethod
    async def generate(self, request: EngineRequest) -> EngineResult:
        """Generate every choice of `request`."""

    async def tokenize(self, request: TokenizeRequest) -> list[int]:
        """Token ids of a prompt or a templated chat, exactly as generation would see them."""
        raise ConfigError(f"the {self.name} engine has no tokenizer; /tokenize is unavailable")

    async def detokenize(self, ids: list[int]) -> str:
        """The text of `ids` (special tokens kept)."""
        raise ConfigError(f"the {self.name} engine has no tokenizer; /detokenize is unavailable")

    async def token_texts(self, ids: list[int]) -> list[str]:
        """Each token's own text (for `return_token_strs`)."""
        raise ConfigError(f"the {self.name} engine has no tokenizer; /tokenize is unavailable")

    async def tokenizer_info(self) -> dict[str, Any]:
        """The tokenizer's configuration, as vLLM's GET /tokenizer_info gives it."""
        raise ConfigError(
            f"the {self.name} engine has no tokenizer; /tokenizer_info is unavailable"
        )

    async def stream(self, request: EngineRequest) -> AsyncIterator[Delta | EngineResult]:
        """Deltas as they are produced, then the final EngineResult (for usage).

        The default runs `generate` and sends each choice as one delta; engines
        that produce tokens one at a time override it.
        """
        result = await self.generate(request)
        for index, choice in enumerate(result.choices):
            yield Delta(index, choice.text, choice.finish_reason, choice.logprobs)
        yield result

    async def close(self) -> None:
        """Release the model."""
        self.state = "stopped"


def hf_tokenizer_info(tokenizer: Any, max_model_len: int | None) -> dict[str, Any]:
    """vLLM's /tokenizer_info for a Hugging Face tokenizer: its class, special tokens,
    whether it adds bos/eos, its chat template and the served context length."""
    info: dict[str, Any] = {"tokenizer_class": type(tokenizer).__name__}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token", "chat_template"):
        value = getattr(tokenizer, key, None)
        if isinstance(value, str):
            info[key] = value
    for key in ("add_bos_token", "add_eos_token"):
        value = getattr(tokenizer, key, None)
        if isinstance(value, bool):
            info[key] = value
    if max_model_len is not None:
        info["model_max_length"] = max_model_len
    return info
