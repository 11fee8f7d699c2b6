"""Coalesce concurrent requests into batched HTTP calls for template providers.

    submit(item, group) ──► pending ──► (a call slot free?) ──► batch ──► send(group, items)
                                                                   └──► results, in order

Scheduling rules (the hf engine's, providers/hf/engine.py, with several call slots):

* A batch starts as soon as a call slot is free; there is no timer and no polling.
* An idle batcher starts on the next turn of the event loop (`loop.call_soon`), so
  requests submitted in the same turn (N callers woken together) share one batch.
* A batch holds up to `max_batch` requests of one group (requests whose payload
  settings match); requests of other groups keep their place for a later batch.
* A failed call fails every request of its batch with its own copy of the error,
  so each caller's retry stage counts and retries on its own.

Queues are kept per event loop, since asyncio futures cannot cross loops.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gauge.errors import ModelError

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[Hashable, list[T]], Awaitable[list[R]]]


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    group: Hashable
    future: asyncio.Future[R]
    max_batch: int
    slots: int


@dataclass(slots=True)
class _LoopQueue(Generic[T, R]):
    pending: deque[_Pending[T, R]] = field(default_factory=deque)
    in_flight: int = 0
    scheduled: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Batcher(Generic[T, R]):
    """Run `send(group, items) -> results` (one per item, in order) in batches."""

    def __init__(self, send: Send[T, R], owner: str) -> None:
        self._send = send
        self._owner = owner
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[T, R]] = (
            weakref.WeakKeyDictionary()
        )
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        """Sizes of the batches sent so far (most recent last), for tests and benchmarks."""

    async def submit(self, item: T, group: Hashable, max_batch: int, slots: int) -> R:
        """Queue `item` and wait for its result; at most `slots` calls run at once."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _LoopQueue()
        future: asyncio.Future[R] = loop.create_future()
        queue.pending.append(_Pending(item, group, future, max(1, max_batch), max(1, slots)))
        if not queue.scheduled and queue.in_flight < max(1, slots):
            queue.scheduled = True
            loop.call_soon(self._start, loop, queue)
        # A cancelled caller cancels its future, which keeps it out of later batches.
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue[T, R]) -> None:
        queue.scheduled = False
        pending = queue.pending
        while pending:
            while pending and pending[0].future.done():
                pending.popleft()
            if not pending or queue.in_flight >= pending[0].slots:
                return
            batch = _take(pending)
            queue.in_flight += 1
            self.batch_sizes.append(len(batch))
            task = loop.create_task(self._run(loop, queue, batch))
            queue.tasks.add(task)
            task.add_done_callback(queue.tasks.discard)
            abandon = functools.partial(_abandon, batch, task)
            for entry in batch:
                entry.future.add_done_callback(abandon)

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: _LoopQueue[T, R],
        batch: list[_Pending[T, R]],
    ) -> None:
        try:
            results = await self._send(batch[0].group, [entry.item for entry in batch])
            if len(results) != len(batch):
                raise ModelError(
                    f"{self._owner} returned {len(results)} results for {len(batch)} "
                    "requests; it must return one per request, in order"
                )
        except asyncio.CancelledError:
            for entry in batch:
                entry.future.cancel()
            raise
        except Exception as ex:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(clone_error(ex))
        else:
            for entry, result in zip(batch, results, strict=True):
                if not entry.future.done():
                    entry.future.set_result(result)
        finally:
            queue.in_flight -= 1
            if queue.pending and not loop.is_closed():
                # Whatever queued while this call ran starts now, with no wait.
                self._start(loop, queue)


def _take(pending: deque[_Pending[T, R]]) -> list[_Pending[T, R]]:
    """Up to the head's max_batch live requests of the head's group, in arrival order."""
    head = pending.popleft()
    batch = [head]
    if head.max_batch == 1:
        return batch
    kept: list[_Pending[T, R]] = []
    while pending and len(batch) < head.max_batch:
        entry = pending.popleft()
        if entry.future.done():
            continue
        (batch if entry.group == head.group else kept).append(entry)
    pending.extendleft(reversed(kept))
    return batch


def _abandon(
    batch: list[_Pending[Any, Any]], task: asyncio.Task[None], _: asyncio.Future[Any]
) -> None:
    # Every caller of a batch gave up (attempt timeout, cancelled run): stop its call.
    if not task.done() and all(entry.future.cancelled() for entry in batch):
        task.cancel()


def clone_error(ex: Exception) -> Exception:
    """A copy of `ex` for one caller (callers attach their own retry history to it)."""
    copy = type(ex).__new__(type(ex))
    copy.args = ex.args
    copy.__dict__.update(ex.__dict__)
    copy.__cause__ = ex.__cause__
    copy.__suppress_context__ = True
    return copy
