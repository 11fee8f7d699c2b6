"""The batch stage: generate calls with `batch` on go to provider batch jobs.

    total deadline -> cache -> batch -> retry -> connection key -> attempt -> provider

It sits inside the cache (a hit never reaches a job; an answer from a job is
stored like any other) and outside retry: a request in a job takes no
connection slot and no RPM/TPM budget (batch endpoints have their own limits).
Streams and loglikelihood requests pass through untouched.

A request's outcome from its job (collector.py):
- an output: returned, marked `metadata["batch"] = <job id>` (the price of
  batch jobs applies to its usage);
- a retryable item error (a rate limit, a server error inside the job): the
  request goes on through the normal real-time path (retry -> ... -> provider);
- another item error: BatchItemFailed;
- no answer (the job expired or was cancelled): the request goes into the next
  job, at most MAX_ROUNDS times, then through the real-time path.

`timeout` bounds the real-time calls only; a job's wait is bounded by the
provider's completion window (24 hours), after which its requests are re-batched.
"""

from __future__ import annotations

import asyncio
import weakref

from gauge.errors import ModelTimeout, UnsupportedFeature
from gauge.model.api import ModelAPI
from gauge.model.attempt import classify
from gauge.model.batch.api import (
    BatchAPI,
    BatchItem,
    BatchLedger,
    ItemError,
    batch_ledger,
    batch_observer,
)
from gauge.model.batch.collector import Collector
from gauge.model.batch.config import BatchConfig, batch_setting
from gauge.model.batch.errors import BatchItemFailed
from gauge.model.batch.ids import IdMaker
from gauge.model.output import ModelOutput
from gauge.model.request import Call, ModelRequest, Sleep, Stage

BATCH_PROVIDERS = ("openai", "azure openai", "anthropic", "google", "together", "groq", "mistral")
"""The providers with a batch endpoint, as the one-line error names them."""

MAX_ROUNDS = 3
"""Jobs a request may go unanswered in (expired, cancelled) before it is sent in real time."""


def no_batch_endpoint(provider: str) -> str:
    """The one-line error for `batch` on a provider without a batch endpoint."""
    return (
        f"provider {provider!r} has no batch endpoint; batch works with "
        f"{', '.join(BATCH_PROVIDERS)}: remove batch (--batch) for this model"
    )


def check_batch(api: ModelAPI) -> BatchAPI:
    """`api`'s BatchAPI, or UnsupportedFeature naming the providers that have one."""
    batch_api = api.batch_api()
    if batch_api is None:
        raise UnsupportedFeature(no_batch_endpoint(api.name))
    return batch_api


def batch_stage(api: ModelAPI, sleep: Sleep) -> Stage:
    """A stage that sends generate calls to batch jobs when `config.batch` is on."""

    def wrap(call: Call) -> Call:
        batches = Batches(api, sleep)

        async def stage(request: ModelRequest) -> ModelOutput:
            setting = request.config.batch
            if not setting or request.operation != "generate":
                return await call(request)
            config = batch_setting(setting)
            if config is None:
                return await call(request)
            return await batches.send(request, config, call)

        return stage

    return wrap


class Batches:
    """A model's batching: its BatchAPI, custom ids, and a collector per loop and config."""

    def __init__(self, api: ModelAPI, sleep: Sleep) -> None:
        self.api = api
        self.sleep = sleep
        self._batch_api: BatchAPI | None = None
        self._ids: IdMaker | None = None
        self._counts: weakref.WeakKeyDictionary[BatchLedger, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        """Occurrence counts of custom ids per ledger (per run); without one, the model's."""
        self._collectors: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[BatchConfig, Collector]
        ] = weakref.WeakKeyDictionary()

    def collector(self, config: BatchConfig) -> Collector:
        """The running loop's collector for `config` (futures cannot cross loops)."""
        if self._batch_api is None:
            self._batch_api = check_batch(self.api)
        loop = asyncio.get_running_loop()
        per_loop = self._collectors.setdefault(loop, {})
        collector = per_loop.get(config)
        if collector is None:
            api = self.api
            collector = per_loop[config] = Collector(
                self._batch_api, api.model_name, config, self.sleep, lambda ex: classify(api, ex)
            )
        return collector

    async def send(self, request: ModelRequest, config: BatchConfig, call: Call) -> ModelOutput:
        """`request`'s output from a job (or, see the module doc, from the real-time path)."""
        collector = self.collector(config)
        if self._ids is None:
            self._ids = IdMaker(self.api)
        ledger, observer = batch_ledger.get(), batch_observer.get()
        seen = None if ledger is None else self._counts.setdefault(ledger, {})
        item = BatchItem(self._ids.next_id(request, seen), request)
        for _ in range(MAX_ROUNDS):
            answer = await collector.ask(item, ledger, observer)
            if isinstance(answer, ModelOutput):
                return answer
            if isinstance(answer, ItemError):
                if answer.retryable:
                    return await realtime(call, request)
                status = f"HTTP {answer.status}: " if answer.status is not None else ""
                raise BatchItemFailed(
                    f"{collector.api.provider} batch request {item.custom_id} failed: "
                    f"{status}{answer.message}",
                    answer.status,
                )
        return await realtime(call, request)


async def realtime(call: Call, request: ModelRequest) -> ModelOutput:
    """Send `request` on the real-time path, bounded by `config.timeout` (the total
    deadline stage leaves batched requests alone)."""
    seconds = request.config.timeout
    if seconds is None:
        return await call(request)
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await call(request)
    except TimeoutError as ex:
        if not deadline.expired():
            raise
        raise ModelTimeout(
            f"model call exceeded timeout={seconds:g}s (sent in real time after its batch "
            "job); raise the timeout to wait longer"
        ) from ex
