"""The batching engine: one worker thread runs batches of requests off the event loop.

    submit() ──► pending ──► (engine free?) ──► batch ──► worker thread ──► futures

Scheduling rules, and why:

* A batch starts the moment the engine is free. Requests that arrive while a
  batch runs wait together and become the next batch as soon as it finishes.
* An idle engine starts its batch on the next turn of the event loop
  (`loop.call_soon`), not at once, so every request submitted in the same turn
  (N coroutines started by `asyncio.gather`, or N waiters woken together by the
  connection limiter) joins one batch. That costs one loop turn, not a timer:
  there is no polling loop and no idle window.
* Batch size is capped per request (`max_batch`, which the provider sets from
  `max_connections`); the rest stays pending for the next batch.
* One worker thread serialises all work on the model, which is not thread-safe.

Queues are kept per event loop (asyncio futures cannot cross loops), so one
engine serves a memoized Model used from several loops, one batch at a time.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
U = TypeVar("U")

RunBatch = Callable[[list[T]], list["R | BaseException"]]


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    max_batch: int


@dataclass(slots=True)
class _LoopQueue(Generic[T, R]):
    pending: deque[_Pending[T, R]] = field(default_factory=deque)
    busy: bool = False
    scheduled: bool = False


class BatchEngine(Generic[T, R]):
    """Run `run_batch(items) -> results` (one result or exception per item) in batches."""

    def __init__(self, run_batch: RunBatch[T, R], name: str = "gauge-batch") -> None:
        self._run_batch = run_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[T, R]] = (
            weakref.WeakKeyDictionary()
        )
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        """Sizes of the batches run so far (most recent last), for tests and benchmarks."""

    async def submit(self, item: T, max_batch: int = 32) -> R:
        """Queue `item` and wait for its result (or its exception)."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _LoopQueue()
        future: asyncio.Future[R] = loop.create_future()
        queue.pending.append(_Pending(item, future, max(1, max_batch)))
        if not queue.busy and not queue.scheduled:
            queue.scheduled = True
            loop.call_soon(self._start, loop, queue)
        return await future

    async def run_in_worker(self, fn: Callable[[], U]) -> U:
        """Run `fn` on the worker thread, serialised with the batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        """Stop accepting work; a running batch finishes in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue[T, R]) -> None:
        queue.scheduled = False
        if queue.busy:
            return
        batch: list[_Pending[T, R]] = []
        # A cancelled request (attempt timeout, caller gone) never reaches the model.
        while queue.pending and queue.pending[0].future.done():
            queue.pending.popleft()
        if not queue.pending:
            return
        limit = queue.pending[0].max_batch
        while queue.pending and len(batch) < limit:
            entry = queue.pending.popleft()
            if not entry.future.done():
                batch.append(entry)
        queue.busy = True
        self.batch_sizes.append(len(batch))
        items = [entry.item for entry in batch]
        try:
            work = loop.run_in_executor(self._executor, self._run_batch, items)
        except RuntimeError as ex:  # the engine was closed
            self._fail(batch, ex)
            queue.busy = False
            return
        # A done-callback, not a task: the batch's results are set in the same
        # loop turn that the worker reports them.
        work.add_done_callback(functools.partial(self._finish, loop, queue, batch))

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: _LoopQueue[T, R],
        batch: list[_Pending[T, R]],
        work: asyncio.Future[list[R | BaseException]],
    ) -> None:
        try:
            if work.cancelled():
                for entry in batch:
                    entry.future.cancel()
                return
            error = work.exception()
            if error is None and len(work.result()) != len(batch):
                error = RuntimeError(
                    f"batch runner returned {len(work.result())} results for {len(batch)} requests"
                )
            if error is not None:
                self._fail(batch, error)
                return
            for entry, result in zip(batch, work.result(), strict=True):
                if entry.future.done():
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)
        finally:
            queue.busy = False
            if queue.pending and not loop.is_closed():
                # Whatever arrived while this batch ran starts now, with no wait.
                self._start(loop, queue)

    @staticmethod
    def _fail(batch: list[_Pending[T, R]], error: BaseException) -> None:
        # One failure for the whole batch: each caller gets its own copy, since
        # the retry layer attaches per-request history to the exception.
        for entry in batch:
            if not entry.future.done():
                entry.future.set_exception(_own_copy(error))


def _own_copy(ex: BaseException) -> BaseException:
    try:
        dup = copy.copy(ex)
    except Exception:
        return ex
    dup.__cause__ = ex.__cause__
    return dup.with_traceback(ex.__traceback__)
