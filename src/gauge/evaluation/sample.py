"""Solve, score and journal one sample, and count what its model calls did.

Per-sample counts (retries, rate-limit hits, cache hit, usage) live in a
`SampleStats` held by a ContextVar: each worker coroutine has its own context,
so the model pipeline's callbacks reach the right sample without the model
layer knowing about evals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from gauge.errors import one_line
from gauge.evaluation.dataset import Sample
from gauge.evaluation.journal import JournalWriter
from gauge.evaluation.progress import Counters
from gauge.evaluation.results import Aggregator
from gauge.evaluation.scorer import Score
from gauge.evaluation.solver import Generate
from gauge.evaluation.state import TaskState
from gauge.evaluation.task import Task
from gauge.model.api import RetryDecision
from gauge.model.cache.policy import cache_epoch
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage, ChatMessageUser
from gauge.model.model import Model
from gauge.model.output import ModelUsage
from gauge.model.pipeline import call_observer


@dataclass(slots=True)
class SampleStats:
    """What the evaluated model's calls did for the sample in flight."""

    failed_attempts: int = 0
    rate_limits: int = 0
    cache: str | None = None
    """"hit" when any call was answered from the response cache, "miss" when none was."""
    usage: ModelUsage | None = None
    unmetered: bool = False
    """A call was sent and charged but reported no usage: the sample's cost is unknown."""


_stats: ContextVar[SampleStats | None] = ContextVar("gauge_sample_stats", default=None)


def instrument(model: Model, counters: Counters) -> Callable[[], None]:
    """Count failed attempts and rate limits per sample, for this run.

    The model pipeline reports every failed attempt to the `call_observer` of
    the calling context; each worker sets `_stats` per sample, so the counts
    reach the right sample. Returns the undo function.
    """

    def observe(decision: RetryDecision) -> None:
        stats = _stats.get()
        if stats is not None:
            stats.failed_attempts += 1
            if decision.kind == "rate_limit":
                stats.rate_limits += 1
                counters.rate_limits += 1

    token = call_observer.set(observe)
    return lambda: call_observer.reset(token)


def make_generate(model: Model, run_config: GenerateConfig) -> Generate:
    """The `generate` solvers call: the evaluated model with the run's config."""

    async def generate(state: TaskState, config: GenerateConfig | None = None) -> TaskState:
        cfg = run_config.merge(config) if config is not None else run_config
        output = await model.generate(state.messages, config=cfg)
        state.output = output
        state.messages.append(output.message)
        stats = _stats.get()
        if stats is not None:
            if output.metadata and (hit := output.metadata.get("cache")) in ("hit", "miss"):
                stats.cache = "hit" if "hit" in (hit, stats.cache) else "miss"
            cached = output.metadata is not None and output.metadata.get("cache") == "hit"
            if (spent := output.usage) is not None:
                if cached:  # spend is what the provider charges: a cache hit costs nothing now
                    spent = spent.model_copy(update={"cost": Decimal(0)})
                usage = stats.usage
                stats.usage = spent if usage is None else usage + spent
            elif not cached and output.error is None:
                stats.unmetered = True
        return state

    return generate


def _input_json(value: str | list[ChatMessage]) -> Any:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return orjson.Fragment(_messages_json(value))


def _messages_json(messages: list[ChatMessage]) -> bytes:
    return b"[" + b",".join(m.model_dump_json(exclude_none=True).encode() for m in messages) + b"]"


def _conversation(state: TaskState, before: bytes) -> orjson.Fragment | None:
    """The messages before the final output, when the solver made them differ from
    what the sample started with (`before`: a system message, a template, tool calls,
    several turns); else None, so a single-turn sample's line stays as it was."""
    messages = state.messages
    output = state.output
    if output is not None and messages and output.choices and messages[-1] is output.message:
        messages = messages[:-1]
    conversation = _messages_json(messages)
    return None if conversation == before else orjson.Fragment(conversation)


def _usage_dict(usage: ModelUsage) -> dict[str, Any]:
    # Hand-built: model_dump costs more than the rest of the journal line.
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    for name in ("input_tokens_cache_write", "input_tokens_cache_read", "reasoning_tokens"):
        if (value := getattr(usage, name)) is not None:
            out[name] = value
    # USD spent (docs/cost.md); absent when unknown. A float keeps the Decimal's digits.
    if usage.cost is not None:
        out["cost"] = float(usage.cost)
    return out


def _new_state(model: Model, sample: Sample, epoch: int) -> TaskState:
    source = sample.input
    messages: list[ChatMessage] = (
        [ChatMessageUser(content=source)]
        if isinstance(source, str)
        else [m.model_copy() for m in source]
    )
    return TaskState(
        model=model.name,
        sample_id=sample.id if sample.id is not None else 0,
        epoch=epoch,
        input=source,
        messages=messages,
        target=sample.targets,
        choices=sample.choices,
        metadata=dict(sample.metadata) if sample.metadata else {},
    )


async def run_sample(
    task: Task,
    model: Model,
    sample: Sample,
    epoch: int,
    generate: Generate,
    counters: Counters,
    aggregator: Aggregator,
    writer: JournalWriter,
) -> dict[str, Any] | None:
    """Solve and score one sample, journal it; returns its error (None on success)."""
    stats = SampleStats()
    _stats.set(stats)
    # The response cache keys per-epoch entries on this (see gauge.model.cache).
    cache_epoch.set(epoch)
    state = _new_state(model, sample, epoch)
    before = _messages_json(state.messages)
    started = time.perf_counter()
    error: dict[str, Any] | None = None
    scores: dict[str, Score] = {}
    try:
        state = await task.solver(state, generate)
        for scorer in task.scorers:
            scores[scorer.name] = await scorer(state, state.target)
    except asyncio.CancelledError:
        raise
    except Exception as ex:
        error = {"type": type(ex).__name__, "message": one_line(ex)}
        if attempts := getattr(ex, "gauge_attempts", None):
            error["attempts"] = attempts
    output = state.output
    usage = stats.usage
    # A failed sample's last failed attempt is the one that ended it, not a retry.
    retries = stats.failed_attempts if error is None else max(0, stats.failed_attempts - 1)
    record: dict[str, Any] = {
        "type": "sample",
        "id": sample.id,
        "epoch": epoch,
        "model": model.name,
        "input": _input_json(sample.input),
        "target": sample.target,
        "output": None
        if output is None
        else {
            "completion": output.completion,
            "model_output": orjson.Fragment(output.model_dump_json(exclude_none=True)),
        },
        "scores": {name: s.as_dict() for name, s in scores.items()},
        "usage": None if usage is None else _usage_dict(usage),
        "time": round(time.perf_counter() - started, 6),
        "retries": retries,
        "cache": stats.cache,
        "error": error,
    }
    if (conversation := _conversation(state, before)) is not None:
        record["messages"] = conversation
    if sample.metadata:
        record["metadata"] = sample.metadata
    if state.store:
        record["store"] = state.store
    writer.write(record)
    counters.done += 1
    counters.retries += retries
    if usage is not None:
        counters.tokens += usage.total_tokens
    counters.spend.add((sample.id, epoch), usage, stats.unmetered)
    if stats.cache == "hit":
        counters.cache_hits += 1
    if error is not None:
        counters.errors += 1
    else:
        aggregator.add(sample.id, scores)
    return error
