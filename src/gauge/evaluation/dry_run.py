"""`gauge eval --dry-run`: tokens and cost per model, estimated before anything is sent.

For each model: the samples the run would take (limit x epochs), the prompt tokens
(the model's tokenizer where gauge knows one without downloading, else characters
/ 4, as the output says), the output tokens (max_tokens, or the provider's
default, times samples), and their cost at the model's price, with the batch
price beside it when the provider has one. No request is sent and no journal is
written. The estimate assumes one generate call per sample: a solver that calls
the model several times (tools, multi-turn) will spend more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gauge.errors import MissingAPIKey
from gauge.evaluation.cost_limit import estimator
from gauge.evaluation.settings import resolve_settings
from gauge.evaluation.task import Task
from gauge.model.config import GenerateConfig
from gauge.model.cost import usd
from gauge.model.model import Model

_NO_KEY = "no-request-is-sent"
"""Stands in for a missing API key: a dry run builds the model but never calls it."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """One model's estimate for a task."""

    model: str
    samples: int
    input_tokens: int
    tokenizer: str
    output_tokens: int | None
    output_source: str
    cost: Decimal | None
    batch_cost: Decimal | None
    price: str
    """Where the price came from, or why there is none."""

    def lines(self) -> list[str]:
        """The estimate as lines of text."""
        if self.output_tokens is None:
            output = "unknown (no max_tokens: set --max-tokens)"
        else:
            output = f"{self.output_tokens:,} ({self.output_source})"
        cost = usd(self.cost)
        if self.batch_cost is not None:
            cost += f" (batch: {usd(self.batch_cost)})"
        return [
            self.model,
            f"  samples        {self.samples:,}",
            f"  input tokens   {self.input_tokens:,} ({self.tokenizer})",
            f"  output tokens  at most {output}",
            f"  cost           {cost}",
            f"  price          {self.price}",
        ]


def estimate(
    task: Task, model: Model, run_config: GenerateConfig | None, samples: int, epochs: int
) -> Estimate:
    """The estimate of running `task`'s first `samples` samples `epochs` times on `model`."""
    resolved = resolve_settings(model.config, task.config, run_config).resolved
    guess = estimator(model, resolved)
    chosen = task.dataset.samples[:samples]
    input_tokens = sum(guess.input_tokens(s) for s in chosen) * epochs
    count = len(chosen) * epochs
    output = None if guess.max_tokens is None else guess.max_tokens * count
    cost = batch = None
    if output is not None:
        cost = guess.cost(input_tokens, output)
        if model.price is not None and model.price.batch is not None:
            batch = guess.cost(input_tokens, output, batch=True)
    source = (
        f"max_tokens {guess.max_tokens} each"
        if guess.output_source == "max_tokens"
        else f"provider default max_tokens {guess.max_tokens} each"
    )
    where = model.price.source if model.price else "none in the snapshot: cost unknown"
    if model.price is None:
        where += "; give one with --model-cost-config"
    return Estimate(
        model.name, count, input_tokens, guess.tokenizer_name, output, source, cost, batch, where
    )


async def dry_run(
    task: Task,
    models: Sequence[str | None],
    run_config: GenerateConfig | None = None,
    model_config: GenerateConfig | None = None,
    base_url: str | None = None,
    model_args: dict[str, Any] | None = None,
    limit: int | None = None,
    epochs: int | None = None,
) -> str:
    """The dry-run report of `task` on each of `models` (nothing is sent)."""
    from gauge.model.factory import get_model

    samples = len(task.dataset.samples) if limit is None else limit
    rounds = epochs or task.epochs
    lines = [f"dry run of {task.name}: no request sent; estimates per model"]
    for name in models:
        try:
            model = get_model(name, model_config, base_url, memoize=False, **(model_args or {}))
        except MissingAPIKey:  # a key is needed to send, not to estimate
            args = {**(model_args or {}), "api_key": _NO_KEY}
            model = get_model(name, model_config, base_url, memoize=False, **args)
        try:
            lines += estimate(task, model, run_config, samples, rounds).lines()
        finally:
            await model.close()
    return "\n".join(lines)
