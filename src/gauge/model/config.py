"""GenerateConfig: the one schema for generation settings.

Layering is by "was it set?", not "is it None?": `a.merge(b)` takes every field
that `b` set explicitly (even to None) and keeps `a` for the rest. The dict fields
`extra_headers` and `extra_body` are merged key by key (the later layer wins per
key; set the whole field to None to clear it); every other field, `logit_bias`
and `response_schema` included, is replaced whole.

Precedence when a model is called: provider default < model config < task config
< run config (eval() keywords, command-line flags) < per-call config; an eval
resolves its layers once (gauge.evaluation.settings.resolve_settings).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gauge.model.batch.config import BatchConfig, batch_value
from gauge.model.cache.policy import CachePolicy, config_value
from gauge.model.config_values import logit_bias_value, reasoning_history_value


class ResponseSchema(BaseModel):
    """Ask the model for JSON matching `json_schema` (structured output)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    json_schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class GenerateConfig(BaseModel):
    """Settings for one generation; every field is optional (None = provider default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    # -- pipeline (handled by gauge for every provider) --
    max_retries: int | None = Field(default=None, ge=0)
    """Retries after the first attempt (default 5); 0 disables retrying."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds for the whole call, all attempts and waits included."""
    attempt_timeout: float | None = Field(default=None, gt=0)
    """Seconds for one attempt; a slower attempt is cancelled and retried."""
    max_connections: int | None = Field(default=None, ge=1)
    """Concurrent requests per connection key (provider + key + model + base URL).

    Unset: adaptive (starts at the provider's default, grows while saturated,
    halves on rate limits); set: fixed at this value."""
    rpm: float | None = Field(
        default=None, gt=0, description="Requests per minute per connection key."
    )
    """Requests per minute per connection key (a token bucket; learned from headers too)."""
    tpm: float | None = Field(
        default=None, gt=0, description="Tokens per minute per connection key."
    )
    """Tokens per minute per connection key (estimated input + max_tokens, reconciled)."""
    system_message: str | None = None
    """Inserted after any leading system messages."""
    max_tool_output: int | None = Field(default=None, ge=0)
    """Bytes of each tool result kept when it is sent back (unset: 16 KiB; 0: no limit)."""
    drop_unsupported: bool | None = None
    """Drop (with a warning) fields the provider cannot honour instead of failing."""
    cache: bool | CachePolicy | None = None
    """Reuse stored responses: True (expiry 1W), an expiry such as "1D", or a CachePolicy."""

    _cache_value = field_validator("cache", mode="before")(config_value)
    batch: bool | BatchConfig | None = None
    """Send generate calls as provider batch jobs (about half price): True, a batch
    size, or a BatchConfig (size, send_delay, tick, max_batches...); see docs/batch.md."""

    _batch_value = field_validator("batch", mode="before")(batch_value)

    # -- sampling and output (mapped by each provider that honours them) --
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stop_seqs: list[str] | None = None
    best_of: int | None = Field(default=None, ge=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[int, float] | None = None
    """Token id -> bias in [-100, 100]; the text form "42=10,43=-10" is accepted too."""
    seed: int | None = None
    top_k: int | None = Field(default=None, ge=1)
    num_choices: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    parallel_tool_calls: bool | None = None
    internal_tools: bool | None = None
    """Let the provider map tools onto its own built-in tools where it has them."""
    cache_prompt: Literal["auto"] | bool | None = None
    """Provider-side prompt caching (a cost hint: results do not change)."""
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    reasoning_history: Literal["none", "all", "last", "auto"] | None = None
    """Which earlier reasoning to send back; auto = all when the provider replays it
    (True means "all", False "none", as in Inspect AI)."""
    response_schema: ResponseSchema | None = None
    extra_headers: dict[str, str] | None = None
    extra_body: dict[str, Any] | None = None

    _history_value = field_validator("reasoning_history", mode="before")(reasoning_history_value)
    _bias_value = field_validator("logit_bias", mode="before")(logit_bias_value)

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        if value:
            for token, bias in value.items():
                if not -100 <= bias <= 100:
                    raise ValueError(f"logit_bias for token {token} is {bias}; use -100..100")
        return value

    def merge(self, other: GenerateConfig | dict[str, Any] | None) -> GenerateConfig:
        """A new config: this one overridden by every field `other` set (a dict is
        validated first, as GenerateConfig(**other))."""
        other = as_config(other)
        if other is None or not other.model_fields_set:
            return self
        if not self.model_fields_set:
            return other
        values = {name: getattr(self, name) for name in self.model_fields_set}
        for name in other.model_fields_set:
            new = getattr(other, name)
            old = values.get(name)
            if name in _DICT_MERGED and isinstance(new, dict) and isinstance(old, dict):
                new = {**old, **new}
            values[name] = new
        # Both sides are validated already: construct without re-validating.
        return GenerateConfig.model_construct(_fields_set=set(values), **values)

    def set_fields(self) -> dict[str, Any]:
        """The explicitly set fields whose value is not None."""
        return {
            name: value
            for name in self.model_fields_set
            if (value := getattr(self, name)) is not None
        }


_DICT_MERGED = frozenset({"extra_headers", "extra_body"})

PIPELINE_FIELDS = frozenset(
    {
        "max_retries",
        "timeout",
        "attempt_timeout",
        "max_connections",
        "rpm",
        "tpm",
        "system_message",
        "max_tool_output",
        "drop_unsupported",
        # gauge filters the replayed reasoning itself (prepare.filter_reasoning)
        "reasoning_history",
        "cache",
        "batch",
    }
)
"""Fields gauge applies itself, for every provider."""

ADVISORY_FIELDS = frozenset({"cache_prompt", "internal_tools"})
"""Fields that never change results; a provider that lacks them gets a warning."""

PROVIDER_FIELDS = frozenset(GenerateConfig.model_fields) - PIPELINE_FIELDS
"""Fields a provider must declare in `honours` to receive."""


def as_config(value: GenerateConfig | dict[str, Any] | None) -> GenerateConfig | None:
    """`value` as a GenerateConfig; a plain dict is validated (one-line error if bad)."""
    if value is None or isinstance(value, GenerateConfig):
        return value
    from gauge.errors import ConfigError, one_line

    if isinstance(value, dict):
        try:
            return GenerateConfig(**value)
        except ValueError as ex:
            raise ConfigError(f"bad config: {one_line(ex)}") from None
    raise ConfigError(f"config must be a GenerateConfig or a dict, got {type(value).__name__}")
