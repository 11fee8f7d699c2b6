"""ModelAPI: the provider contract. A provider only translates.

A provider turns (messages, tools, tool_choice, config) into its wire format and
the answer back into a ModelOutput, and says how to classify its exceptions.
Retries, concurrency limits, deadlines, usage accounting and caching live once,
in the Model pipeline, and apply to every provider, custom ones included.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from gauge.errors import UnsupportedFeature
from gauge.model.call import ModelCall, unwrap
from gauge.model.config import GenerateConfig
from gauge.model.limits import DEFAULT_MAX
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, StreamInfo
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.tools import ToolChoice, ToolInfo

if TYPE_CHECKING:
    from gauge.model.batch.api import BatchAPI

RetryKind = Literal["rate_limit", "transient", "fatal"]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """How the pipeline should treat a failed attempt."""

    kind: RetryKind
    retry_after: float | None = None
    """Seconds the provider asked us to wait (Retry-After and friends)."""

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed."""
        return self.kind != "fatal"


FATAL = RetryDecision("fatal")
TRANSIENT = RetryDecision("transient")

CAPABILITIES = (
    "collapse_user_messages",
    "collapse_assistant_messages",
    "tools_required",
    "tool_result_images",
    "has_reasoning_history",
)
"""The message-shaping capabilities: bool data on every ModelAPI (default False)."""


class Secret:
    """A string whose repr and str are stars, so it cannot leak into logs by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret value; call this only where it is sent."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ModelAPI(abc.ABC):
    """Translate one request to a provider's wire format and back; nothing else.

    Subclasses implement `generate` (the one required method) and set the data
    below where the default does not fit (capabilities are data, not hooks).
    Every other method has a working default.
    """

    name: ClassVar[str] = ""
    """Provider name (`openai` in `openai/gpt-4o`); set by the registry when empty."""
    extra: ClassVar[str | None] = None
    """The pip extra that installs this provider's dependencies (`gauge[extra]`)."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Importable module names the extra provides (checked before construction)."""
    needs_api_key: ClassVar[bool] = False
    api_key_vars: ClassVar[tuple[str, ...] | None] = None
    """Env vars read for the key, first set wins; None = `<PROVIDER>_API_KEY`, () = none."""
    base_url_vars: ClassVar[tuple[str, ...] | None] = None
    """Env vars read for the base URL, first set wins; None = `<PROVIDER>_BASE_URL`."""
    default_base_url: ClassVar[str | None] = None
    honours: ClassVar[frozenset[str]] = frozenset()
    """GenerateConfig fields this provider maps onto its requests."""
    supports_streaming: ClassVar[bool] = False
    supports_chat: ClassVar[bool] = True
    supports_loglikelihood: ClassVar[bool] = False
    """Whether `loglikelihood` / `loglikelihood_rolling` are implemented."""
    model_arg_names: ClassVar[frozenset[str] | None] = None
    """The `-M` names this provider reads; another name is a one-line error before
    anything runs. None: not declared (the keyword parameters of `__init__` count)."""
    model_args_go_to: ClassVar[str | None] = None
    """Where names the provider does not read go, when it passes them on (the request
    body, `from_pretrained`): then only generation settings given as `-M` are refused."""

    # Message-shaping capabilities, read by the pipeline before `generate` (prepare.py).
    # Plain data: set them in the class body, or on the instance in `__init__` when
    # they depend on the model (so they are not ClassVars).
    collapse_user_messages: bool = False
    """Consecutive user messages are merged into one (the API rejects runs of a role)."""
    collapse_assistant_messages: bool = False
    """Consecutive assistant messages are merged into one."""
    tools_required: bool = False
    """A conversation holding tool calls is sent with tool definitions (declared from
    the history, with tool_choice "none", when the caller gives none)."""
    tool_result_images: bool = False
    """Tool messages may carry images; otherwise they move to a following user message."""
    has_reasoning_history: bool = False
    """Earlier reasoning can be replayed; `reasoning_history="auto"` keeps it ("all")
    rather than dropping it ("none")."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A method here (the old hook form, Inspect AI's spelling) would read as True.
        for attr in CAPABILITIES:
            value = cls.__dict__.get(attr, False)
            if not isinstance(value, bool):
                raise TypeError(
                    f"{cls.__qualname__}.{attr} must be a bool (capabilities are data, "
                    f"not methods): write `{attr} = True` in the class body, or set "
                    f"`self.{attr}` in __init__ when it depends on the model"
                )

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        self.model_name = model_name
        self.base_url = base_url
        self.api_key = Secret(api_key) if api_key is not None else None
        self.config = config or GenerateConfig()
        self.model_args = model_args

    def spec_name(self) -> str:
        """What follows `provider/` in this model's name: `get_model` rebuilds it from that.

        Usually the model name; `openai-api/<service>/<model>` keeps its service.
        """
        return self.model_name

    @classmethod
    def route(cls, base_url: str | None, model_args: dict[str, Any]) -> type[ModelAPI]:
        """The class that serves a model under this provider name.

        One name can cover several modes (`vllm/`: a server when a base URL is
        known, the in-process engine otherwise); the default is this class.
        """
        return cls

    @abc.abstractmethod
    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput | tuple[ModelOutput | Exception, ModelCall]:
        """Send one request and translate the answer. Raise the provider's own errors.

        Returning `(output, ModelCall)`, or `(exception, ModelCall)` for a failed call,
        is accepted too (Inspect AI's form): the pipeline keeps the call on `output.call`.
        """

    async def stream(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> AsyncIterator[str | StreamInfo]:
        """Yield text deltas, and StreamInfo items for the response headers, the
        usage and the stop reason where the wire format has them. The default
        yields the whole completion once, with its headers, usage and stop reason."""
        output: ModelOutput = unwrap(
            await self.generate(input, tools, tool_choice, config), self.name
        )
        yield StreamInfo(headers=output.headers)
        yield output.completion
        yield StreamInfo(usage=output.usage, stop_reason=output.stop_reason)

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        """Score each continuation given its context, in order. One call is one provider batch.

        Tokenize with `gauge.model.scoring.encode_pair` so backends agree. Return
        `scoring.with_usage(results, usage)` to report the prompt tokens used.
        """
        raise UnsupportedFeature(self.scoring_unsupported())

    async def loglikelihood_rolling(
        self, texts: list[str], config: GenerateConfig
    ) -> list[Loglikelihood]:
        """Loglikelihood of each whole text (for perplexity), in order."""
        raise UnsupportedFeature(
            f"provider {self.name!r} cannot score rolling loglikelihoods (perplexity); use "
            "hf/<model>, an OpenAI-compatible completions endpoint with echo+logprobs, or vllm"
        )

    def scoring_unsupported(self) -> str:
        """Why this provider cannot score loglikelihoods, and what to use instead."""
        return (
            f"provider {self.name!r} cannot score loglikelihoods; use hf/<model>, "
            "an OpenAI-compatible completions endpoint with echo+logprobs, or vllm"
        )

    def batch_api(self) -> BatchAPI | None:
        """The translator to this provider's batch endpoint, or None when it has none
        (then `batch` is a one-line error). See gauge.model.batch.api."""
        return None

    def score_batch_size(self) -> int:
        """Requests per `loglikelihood` call (the Model splits larger lists)."""
        return 1

    async def close(self) -> None:  # noqa: B027 (optional hook, empty by design)
        """Release clients and connections."""

    def max_tokens(self) -> int | None:
        """Default max_tokens for this model, or None for the provider's own default."""
        return None

    def max_connections(self) -> int:
        """Default concurrent requests per connection key."""
        return 10

    def max_connections_limit(self) -> int:
        """How far the key's adaptive concurrency may grow (no user max_connections).

        256 (or the start, if higher) for remote APIs. A provider whose server runs
        a fixed number of requests at once and queues the rest (an in-process
        engine, Ollama) returns its start: more in flight would only queue.
        """
        return max(DEFAULT_MAX, self.max_connections())

    def connection_key(self) -> str:
        """Requests sharing this key share one concurrency limit and rate budget."""
        key = self.api_key.get() if self.api_key else ""
        digest = hashlib.sha256(key.encode()).hexdigest()[:12] if key else "-"
        return f"{self.name}|{self.base_url or ''}|{digest}|{self.model_name}"

    def classify_error(self, ex: BaseException) -> RetryDecision:
        """Map an exception from `generate` to a retry decision.

        The default treats timeouts and connection errors as transient and
        everything else as fatal. Override it to recognise your provider's
        rate-limit and server errors (specific types first, then `super()`).
        """
        if isinstance(ex, TimeoutError | ConnectionError):
            return TRANSIENT
        return FATAL
