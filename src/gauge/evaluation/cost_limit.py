"""What a run spends, what a sample will cost before it is sent, and --cost-limit.

    Spend        the run's spend so far (Decimal USD; unknown once a sample with tokens
                 had no price), plus the estimates of the samples in flight
    Estimator    a sample's prompt tokens (the model's tokenizer where gauge knows one,
                 else characters / 4) and output tokens (max_tokens), priced
    CostLimit    admits the next sample only while spent + in flight + its estimate stays
                 within the limit; otherwise the run stops cleanly and can be resumed

Spend is what the provider charges: a response-cache hit costs 0 (docs/cost.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gauge.errors import ConfigError
from gauge.model.cost import Price, cost_of, usd
from gauge.model.output import ModelUsage

if TYPE_CHECKING:
    from gauge.evaluation.dataset import Sample
    from gauge.evaluation.journal import Journal
    from gauge.model.config import GenerateConfig
    from gauge.model.model import Model

CHARS_PER_TOKEN = 4
"""The stated heuristic when gauge knows no tokenizer for the model."""
_TIKTOKEN_PROVIDERS = frozenset({"openai", "azure"})


@dataclass(slots=True)
class Spend:
    """A run's spend: exact while every sample had a price, unknown after one did not."""

    spent: Decimal = Decimal(0)
    unpriced_tokens: int = 0
    """Tokens of samples whose cost is unknown (any makes the total unknown)."""
    unmetered: int = 0
    """Samples whose calls reported no usage at all (any makes the total unknown)."""
    largest: Decimal = Decimal(0)
    """The dearest finished sample so far (a floor for the next one's estimate)."""
    reserved: dict[tuple[Any, int], Decimal] = field(default_factory=dict)
    """Estimates of the samples in flight, released as each finishes."""
    limit: CostLimit | None = None

    def admit(self, sample: Sample, epoch: int) -> str | None:
        """None when `sample` may start (its estimate reserved), else why not (--cost-limit)."""
        return None if self.limit is None else self.limit.admit(sample, epoch, self)

    @property
    def total(self) -> Decimal | None:
        """USD spent, or None (unknown) when a sample with tokens had no price."""
        return None if self.unpriced_tokens or self.unmetered else self.spent

    def add(self, key: tuple[Any, int], usage: ModelUsage | None, unmetered: bool = False) -> None:
        """Count one finished sample's usage (its in-flight estimate is released).

        `unmetered`: a call of the sample was answered without usage, so what it
        cost is unknown (never taken as 0)."""
        self.reserved.pop(key, None)
        self.unmetered += unmetered
        if usage is None:
            return
        if usage.cost is None:
            self.unpriced_tokens += usage.total_tokens or usage.input_tokens + usage.output_tokens
            return
        self.spent += usage.cost
        self.largest = max(self.largest, usage.cost)


def prior_spend(journal: Journal | None) -> Spend:
    """The spend a resumed run starts from: the samples its journal records (else 0)."""
    spend = Spend()
    lines = journal.samples.items() if journal is not None else ()
    for key, line in lines:
        if not (usage := line.get("usage")):
            continue
        tokens = int(usage.get("total_tokens") or 0)
        cost = usage.get("cost")
        # The journal's float holds the Decimal's digits: str() gives them back exactly.
        recorded = ModelUsage(
            total_tokens=tokens, cost=None if cost is None else Decimal(str(cost))
        )
        spend.add(key, recorded)
    return spend


@dataclass(slots=True)
class Estimator:
    """Estimates a sample's tokens and cost before anything is sent."""

    price: Price | None
    max_tokens: int | None
    output_source: str
    """Where the output estimate comes from: "max_tokens", "provider default" or "none"."""
    tokenizer: Any = None
    tokenizer_name: str = f"chars/{CHARS_PER_TOKEN} heuristic"
    system: str = ""

    def input_tokens(self, sample: Sample) -> int:
        """Prompt tokens of `sample` (its input and the system message, if any)."""
        text = self.system + "\n" + _text(sample.input) if self.system else _text(sample.input)
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text))
        return -(-len(text) // CHARS_PER_TOKEN)

    def cost(self, input_tokens: int, output_tokens: int, batch: bool = False) -> Decimal | None:
        """Priced at the plain input rate (an upper bound when the provider caches)."""
        usage = ModelUsage(input_tokens=input_tokens, output_tokens=output_tokens)
        return cost_of(usage, self.price, batch)


def estimator(model: Model, config: GenerateConfig) -> Estimator:
    """The Estimator for `model` under the resolved `config` (its tokenizer looked up once)."""
    default = model.api.max_tokens()
    if config.max_tokens is None:
        source = "none"
    elif default is not None and config.max_tokens == default:
        source = "provider default"
    else:
        source = "max_tokens"
    tokenizer, name = _tokenizer(model)
    system = config.system_message or ""
    return Estimator(model.price, config.max_tokens, source, tokenizer, name, system)


def _tokenizer(model: Model) -> tuple[Any, str]:
    """The model's tokenizer where gauge knows one without downloading, else none."""
    from gauge.model.tokenization import load_tokenizer

    args = model.api.model_args or {}
    specs = [args.get("tokenizer"), args.get("tokenizer_path")]
    provider = "azure" if getattr(model.api, "azure", False) is True else model.api.name
    if provider in _TIKTOKEN_PROVIDERS:
        specs.append(model.api.model_name)
    for spec in specs:
        if not spec:
            continue
        try:
            return load_tokenizer(str(spec)), f"tokenizer {spec}"
        except Exception:  # not on disk, not cached: the next candidate, then the heuristic
            continue
    return None, f"chars/{CHARS_PER_TOKEN} heuristic"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "\n".join(getattr(message, "text", "") for message in value)


@dataclass(slots=True)
class CostLimit:
    """Stops starting samples before the run's spend would pass `limit` USD."""

    limit: Decimal
    estimate: Estimator
    batch: bool = False
    refused: str | None = None
    """Once one sample is refused, every later one is (the run winds down)."""

    def admit(self, sample: Sample, epoch: int, spend: Spend) -> str | None:
        """Reserve `sample`'s estimate and return None, or say why it may not start."""
        if self.refused is None:
            self.refused = self._check(sample, epoch, spend)
        return self.refused

    def _check(self, sample: Sample, epoch: int, spend: Spend) -> str | None:
        if spend.total is None:
            return (
                f"--cost-limit {usd(self.limit)}: the spend is unknown (a sample had no "
                "price); give the model a price with --model-cost-config and resume"
            )
        tokens = self.estimate.max_tokens or 0
        guess = self.estimate.cost(self.estimate.input_tokens(sample), tokens, self.batch)
        next_cost = max(guess or Decimal(0), spend.largest)
        committed = spend.spent + sum(spend.reserved.values())
        if committed + next_cost > self.limit:
            return (
                f"--cost-limit {usd(self.limit)} reached: spent {usd(spend.spent)} "
                f"(+{usd(committed - spend.spent)} in flight), the next sample would cost "
                f"about {usd(next_cost)}; raise --cost-limit and resume"
            )
        spend.reserved[(sample.id, epoch)] = next_cost
        return None


def cost_limit(model: Model, config: GenerateConfig, limit: float | None) -> CostLimit | None:
    """The run's CostLimit (None without one); a model with no price cannot be limited."""
    if limit is None:
        return None
    if model.price is None:
        raise ConfigError(
            f"--cost-limit needs a price for {model.name}, which has none in the snapshot; "
            "give one with --model-cost-config (see docs/cost.md)"
        )
    estimate = estimator(model, config)
    batch = bool(config.batch)
    if batch and model.price.batch is None:
        raise ConfigError(
            f"--cost-limit with batch: {model.name} has no batch multiplier; "
            "give one (batch: 0.5) with --model-cost-config"
        )
    return CostLimit(Decimal(str(limit)), estimate, batch)
