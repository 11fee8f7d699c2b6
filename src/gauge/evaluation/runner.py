"""The eval runner: run a Task's samples on one or more models, journal and score them.

A bounded pool of worker coroutines pulls (sample, epoch) pairs from one shared
generator, so 100,000 samples never become 100,000 asyncio tasks. Each finished
sample is written to the journal at once (see sample.py). Sample errors
count toward `max_errors`; past it the run stops, the journal is kept, and the
error says how to resume. Several models run concurrently, sharing one display.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gauge.errors import ConfigError, GaugeError, one_line
from gauge.evaluation import preflight
from gauge.evaluation.batches import JournalLedger, journal_records
from gauge.evaluation.cost_limit import cost_limit, prior_spend
from gauge.evaluation.dataset import Sample
from gauge.evaluation.header import journal_header, journal_path
from gauge.evaluation.journal import Journal, JournalWriter, read_journal
from gauge.evaluation.progress import REFRESH_HZ, Counters, ProgressDisplay
from gauge.evaluation.redact import Redactor
from gauge.evaluation.results import Aggregator, EvalResult
from gauge.evaluation.sample import instrument, make_generate, run_sample
from gauge.evaluation.settings import resolve_settings, samples_in_flight, settings_record
from gauge.evaluation.state import _active_model, _built_helpers, active_config
from gauge.evaluation.task import Task, TaskError, as_task, tasks_for_model
from gauge.model.config import GenerateConfig, as_config
from gauge.model.lm_eval_args import check_conflicts, model_from_args, split_base_url
from gauge.model.model import Model
from gauge.model.pipeline import backoff_lender

DEFAULT_LOG_DIR = "logs"


class EvalError(GaugeError):
    """A run stopped: too many sample errors, or a bad eval setting."""

    exit_code = 1

    def __init__(self, message: str, results: list[EvalResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []
        """Every run's result, the stopped ones included (status "error")."""


_interrupted: list[str] = []
"""Journals of runs stopped by Ctrl-C (or cancelled) since `take_interrupted` last ran."""


def take_interrupted() -> list[str]:
    """The journals of runs interrupted since the last call (the CLI prints how to resume)."""
    out = list(dict.fromkeys(_interrupted))
    _interrupted.clear()
    return out


@dataclass(slots=True)
class RunOptions:
    """How to run: limits, epochs, journal place, error budget, display.

    Generation and pipeline settings (max_connections, max_retries, timeout,
    ...) are not options: they are GenerateConfig fields, resolved by
    `resolve_settings`.
    """

    limit: int | None = None
    epochs: int | None = None
    max_samples: int | None = None
    """Samples in flight at once (Inspect's max_samples); default: the resolved
    max_connections, or while the connection limit adapts, how far it may grow."""
    log_dir: str | Path = DEFAULT_LOG_DIR
    max_errors: int = 0
    display: bool = True
    console: Any = None
    extra_header: dict[str, Any] | None = None
    """Recorded in the journal header's "eval" section, redacted."""
    cost_limit: float | None = None
    """USD: stop starting samples before the run's spend would pass it (cost_limit.py)."""


_OPTION_NAMES = frozenset(f.name for f in fields(RunOptions))


def run_layer(config: GenerateConfig | dict[str, Any] | None, **keywords: Any) -> GenerateConfig:
    """eval()'s run layer: `config`, overridden by GenerateConfig fields given as keywords."""
    base = as_config(config) or GenerateConfig()
    unknown = [k for k in keywords if k not in GenerateConfig.model_fields]
    if unknown:
        raise TypeError(
            f"eval() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"give RunOptions fields ({', '.join(sorted(_OPTION_NAMES))}) "
            "or GenerateConfig fields"
        )
    given = {k: v for k, v in keywords.items() if v is not None}
    if not given:
        return base
    layer = as_config(given)
    assert layer is not None
    return base.merge(layer)


async def run_task(
    task: Task,
    model: Model,
    config: GenerateConfig | None = None,
    options: RunOptions | None = None,
    resume: str | Path | Journal | None = None,
    redactor: Redactor | None = None,
    model_args: dict[str, Any] | None = None,
    display: ProgressDisplay | None = None,
) -> EvalResult:
    """Run `task` on `model`, writing one journal; resume an existing journal if given.

    `config` is the run's layer of settings: it overrides the task's, which
    override the model's (`resolve_settings`). `model_args` are the arguments
    the model was built with (recorded, redacted, so a resume can rebuild it);
    default: what the provider kept. `display` shares one live display between
    runs; without it (and with `options.display`) the run shows its own. A run
    stopped by `max_errors` returns with `status="error"` and the reason in
    `message`.
    """
    options = options or RunOptions()
    redactor = redactor or Redactor.from_environ()
    epochs = options.epochs or task.epochs
    samples: Sequence[Sample] = task.dataset.samples
    if options.limit is not None:
        samples = samples[: options.limit]
    _check_ids(samples, task)
    settings = resolve_settings(model.config, task.config, config)
    run_config = settings.run_config
    width = samples_in_flight(model, settings, options.max_samples)
    scorer_metrics = {
        s.name: tuple(task.metrics) if task.metrics is not None else s.metrics for s in task.scorers
    }
    aggregator = Aggregator(scorer_metrics, task.epoch_reducer, epochs)
    done: set[tuple[Any, int]] = set()
    journal: Journal | None = None
    if resume is not None:
        journal = resume if isinstance(resume, Journal) else read_journal(resume)
        path = journal.path
        ids = {s.id for s in samples}
        for key, line in journal.samples.items():
            # Only pairs of this run count (a resume may use a smaller --limit or fewer epochs).
            if not line.get("error") and key[0] in ids and key[1] <= epochs:
                done.add(key)
                aggregator.add(key[0], line.get("scores") or {})
    else:
        path = journal_path(options.log_dir, task.name, model.name)
    # Pairs are generated lazily: memory stays O(dataset), not O(samples x epochs).
    pairs = ((s, e) for e in range(1, epochs + 1) for s in samples if (s.id, e) not in done)
    pending = sum(1 for s in samples for e in range(1, epochs + 1) if (s.id, e) not in done)
    counters = Counters(total=pending, spend=prior_spend(journal))
    # Refused here (a model without a price) before any journal line is written.
    counters.spend.limit = cost_limit(model, settings.resolved, options.cost_limit)
    _learn_secrets(model, redactor)
    writer = JournalWriter(path, redactor, append=resume is not None)
    # Batch jobs are journaled before waiting; a resume re-attaches to those recorded.
    ledger = JournalLedger(writer, journal_records(journal) if journal else None, counters.batches)
    args = model.api.model_args if model_args is None else model_args
    if resume is None:
        writer.write(
            journal_header(
                task,
                model,
                args,
                settings,
                {
                    "limit": options.limit,
                    "epochs": epochs,
                    "max_errors": options.max_errors,
                    "samples_in_flight": width,
                    "cost_limit": options.cost_limit,
                    **(options.extra_header or {}),
                },
                len(samples),
                redactor,
            )
        )
    else:
        # What this part of the run uses (a resume may change settings): a later
        # `gauge eval --resume` restores the latest.
        record = {
            "type": "resume",
            "time": datetime.now(UTC).isoformat(),
            "pending": pending,
            "model_args": args,
            **settings_record(settings),
            "eval": {"samples_in_flight": width},
        }
        writer.write(redactor.collect(record))
    writer.flush()
    own_display = display is None and options.display
    if own_display:
        display = ProgressDisplay(options.console)
    if display is not None:
        display.add(model.name, counters, model=model, task=task.name)
    undo = instrument(model, counters)
    undo_batches = ledger.enter()  # the batch stage finds the ledger (and display) here
    token = _active_model.set(model)
    config_token = active_config.set(run_config)
    status, message = "success", None
    started = time.perf_counter()
    try:
        await _run_pairs(
            task, model, run_config, width, pairs, counters, aggregator, writer, display, options
        )
    except _TooManyErrors as ex:
        # Printed by the CLI as is: redact it like a journal line (it quotes a sample error).
        status, message = "error", redactor.text(str(ex))
    except (asyncio.CancelledError, KeyboardInterrupt):
        status, message = "cancelled", "interrupted"
        _interrupted.append(str(path))  # the CLI says how to resume it
        ledger.interrupted(str(path), model)  # the CLI asks: leave its batch jobs, or cancel
        raise
    except BaseException as ex:
        status, message = "error", f"{type(ex).__name__}: {one_line(ex)}"
        raise
    finally:
        _active_model.reset(token)
        active_config.reset(config_token)
        undo()
        undo_batches()
        if own_display and display is not None:
            display.close()
        result = EvalResult(
            task=task.name,
            model=model.name,
            journal=str(path),
            status=status,
            metrics=aggregator.compute(),
            samples=len(samples) * epochs,
            completed=len(done) + counters.done - counters.errors,
            errors=counters.errors,
            tokens=counters.tokens,
            seconds=time.perf_counter() - started,
            message=message,
            cost=counters.spend.total,
        )
        writer.write({"type": "summary", **result.as_dict(), "rate_control": model.rate_stats()})
        writer.close()
    if status == "error":
        result.message = (
            f"{message}; journal kept at {path}; fix the cause and run: gauge eval --resume {path}"
        )
    return result


class _TooManyErrors(Exception):
    pass


class _Place:
    """A sample's place among the `width` that may send at once."""

    __slots__ = ("_held", "_places")

    def __init__(self, places: asyncio.Semaphore) -> None:
        self._places = places
        self._held = False

    async def take(self) -> None:
        await self._places.acquire()
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._places.release()

    def lend(self) -> None:
        """The sample sleeps in backoff: another may send in its place."""
        self.give_back()

    async def reclaim(self) -> None:
        """The sleep is over: wait for a place before the next attempt."""
        if not self._held:
            await self.take()


def _learn_secrets(model: Model, redactor: Redactor) -> None:
    redactor.add(model.api.api_key)
    redactor.collect(model.api.model_args)
    if model.api.base_url:
        redactor.add_url(model.api.base_url)


def _check_ids(samples: Sequence[Sample], task: Task) -> None:
    seen: set[Any] = set()
    for index, sample in enumerate(samples):
        if sample.id is None:
            sample.id = index + 1
        if sample.id in seen:
            raise TaskError(
                f"task {task.name}: sample id {sample.id!r} appears twice; ids must be unique"
            )
        seen.add(sample.id)


async def _run_pairs(
    task: Task,
    model: Model,
    config: GenerateConfig,
    width: int,
    pairs: Iterator[tuple[Sample, int]],
    counters: Counters,
    aggregator: Aggregator,
    writer: JournalWriter,
    display: ProgressDisplay | None,
    options: RunOptions,
) -> None:
    stop: list[str] = []
    running: dict[tuple[Any, int], None] = {}  # in flight, in start order

    generate = make_generate(model, config)

    # `width`: the resolved max_connections, or the adaptive ceiling (samples_in_flight).
    width = max(1, min(width, counters.total))
    places = asyncio.Semaphore(width)

    async def worker() -> None:
        while True:
            place = _Place(places)
            await place.take()
            # Checked before taking the next pair, so a stop leaves it in `pairs` (not_run).
            if stop or (pair := next(pairs, None)) is None:
                place.give_back()
                return
            sample, epoch = pair
            if why := counters.spend.admit(sample, epoch):
                running[(sample.id, epoch)] = None  # not started: listed as not run
                while counters.in_flight:  # those in flight finish: they are paid for
                    await asyncio.sleep(0.05)
                stop.append(why)
                place.give_back()
                return
            counters.in_flight += 1
            running[(sample.id, epoch)] = None
            token = backoff_lender.set(place)
            try:
                error = await run_sample(
                    task, model, sample, epoch, generate, counters, aggregator, writer
                )
            finally:
                backoff_lender.reset(token)
                place.give_back()
                counters.in_flight -= 1
                running.pop((sample.id, epoch), None)
            if error is None or stop:
                continue
            where = f"sample {sample.id!r} epoch {epoch}: {error['type']}: {error['message']}"
            if any(a.get("stopped") for a in error.get("attempts") or ()):
                # The model layer stopped the connection key after identical fatal
                # errors (gauge.model.retry.FatalStop): every other sample would fail alike.
                stop.append(
                    f"stopped early after repeated identical fatal errors from {model.name}; "
                    f"the remaining samples were not run ({where})"
                )
            elif counters.errors > options.max_errors:
                stop.append(
                    f"{counters.errors} sample error(s), more than --max-errors "
                    f"{options.max_errors} ({where})"
                )

    # `width` samples send at once; up to as many more may sleep in backoff meanwhile
    # (each lends its place while it sleeps: see gauge.model.pipeline.backoff_lender).
    ticker = asyncio.ensure_future(_tick(writer, display))
    workers: list[asyncio.Future[None]] = []
    try:
        if counters.total:
            await _load(model, counters)
        workers = [asyncio.ensure_future(worker()) for _ in range(min(2 * width, counters.total))]
        pending = set(workers)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task_ in finished:
                task_.result()
            if stop:
                # Samples still in flight are dropped; they are re-run on resume.
                not_run = [[i, e] for i, e in running] + [[s.id, e] for s, e in pairs]
                writer.write({"type": "not_run", "cause": stop[0], "samples": not_run})
                for task_ in pending:
                    task_.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise _TooManyErrors(stop[0])
    finally:
        for task_ in workers:
            task_.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def _load(model: Model, counters: Counters) -> None:
    # A local model (hf) loads before the first sample, so the display says "loading"
    # rather than a frozen 0/N. A load that fails here fails again on the first
    # sample, which records the error as before.
    loads = [load for api in model.replicas if callable(load := getattr(api, "load", None))]
    if not loads:
        return
    counters.loading = True
    try:
        for load in loads:
            with contextlib.suppress(Exception):
                await load()
    finally:
        counters.loading = False
        counters.started = time.perf_counter()  # rate and ETA count from the first sample


async def _tick(writer: JournalWriter, display: ProgressDisplay | None) -> None:
    # Flushes a journal batch that went quiet and redraws the progress line.
    while True:
        await asyncio.sleep(1 / REFRESH_HZ)
        writer.flush()
        if display is not None:
            display.tick()


TaskSpec = Task | str | Callable[[], Task]
"""A Task, a `path.py[@name]` string, or an @task function (called with no arguments)."""


async def eval_async(
    tasks: TaskSpec | Sequence[TaskSpec],
    model: str | Model | Sequence[str | Model] | None = None,
    model_base_url: str | None = None,
    model_args: dict[str, Any] | None = None,
    config: GenerateConfig | dict[str, Any] | None = None,
    resume: str | Path | Journal | None = None,
    model_config: GenerateConfig | dict[str, Any] | None = None,
    shared_state: str | None = None,
    shared_state_fallback: str | None = None,
    **options: Any,
) -> list[EvalResult]:
    """Run each task on each model; one journal and one EvalResult per pair.

    Models run concurrently (each runs its tasks in turn). If a run stops at
    `max_errors`, the others finish, then EvalError is raised (its `results`
    hold every run's result).

    `options` are RunOptions fields (limit, epochs, log_dir, max_errors,
    display) and GenerateConfig fields (max_connections, max_retries, timeout,
    temperature, ...). Settings resolve in one order, lowest first: the
    provider's default < the model's config (`model_config` or get_model's
    `config`, `model_args` such as num_concurrent) < the task's config <
    `config` < GenerateConfig fields given as keywords < a solver's per-call
    config. The response cache is the `cache` setting.

    `shared_state` (a redis:// URL; default GAUGE_SHARED_STATE) shares every
    connection key's budgets, pauses and concurrency with the other processes
    using it (gauge.model.shared, docs/scale.md), from now on in this process;
    `shared_state_fallback="local"` runs with local state if Redis is unreachable.
    """
    from gauge.model.factory import get_model
    from gauge.model.rate.shared import prepare

    # First: an unreachable Redis is one error before any journal or sample.
    prepare(shared_state, shared_state_fallback)

    specs = list(tasks) if isinstance(tasks, list | tuple) else [tasks]
    task_list = [as_task(t) for t in specs]
    models: list[str | Model | None] = (
        list(model) if isinstance(model, list | tuple) else [model]  # type: ignore[list-item]
    )
    run_options = RunOptions(**{k: v for k, v in options.items() if k in _OPTION_NAMES})
    run_config = run_layer(config, **{k: v for k, v in options.items() if k not in _OPTION_NAMES})
    model_layer = as_config(model_config)
    if model_layer is not None and any(isinstance(m, Model) for m in models):
        raise ConfigError(
            "model_config applies to models given by name; "
            "build a Model with get_model(name, config=...) instead"
        )
    if resume is not None and (len(task_list) != 1 or len(models) != 1):
        raise EvalError("--resume continues one journal: give one task and one model")
    # `-M base_url=` (lm-eval's spelling) and model_base_url are one setting.
    model_base_url, model_args = split_base_url(model_base_url, model_args or {})
    # `-M num_concurrent=4` with max_connections=8 in the same call names one setting
    # twice: refused, not resolved by precedence (one of the two is a mistake).
    check_conflicts(model_args, run_config)
    redactor = Redactor.from_environ()
    redactor.collect(model_args)
    if model_base_url:
        redactor.add_url(model_base_url)
    for layer in (run_config, model_layer):
        if layer is not None and layer.extra_headers:
            redactor.collect({"extra_headers": layer.extra_headers})
    helpers: set[Model] = set()
    token = _built_helpers.set(helpers)
    display = ProgressDisplay(run_options.console) if run_options.display else None
    built: list[tuple[Model, bool]] = []
    try:
        for entry in models:
            named, args = model_from_args(entry, model_args)  # lm-eval's model_args={"model":}
            item = get_model(named, config=model_layer, base_url=model_base_url, **args)
            if any(item.name == other.name for other, _ in built):
                raise EvalError(f"model {item.name} is listed twice; list each model once")
            built.append((item, isinstance(entry, Model)))
        tasks_of = {item: tasks_for_model(task_list, item) for item, _ in built}
        try:
            resume = _preflight(tasks_of, built, run_config, run_options, resume, model_args)
        except BaseException:
            for item, given in built:
                if not given:
                    await item.close()
            raise

        async def run_model(item: Model, given: bool) -> list[EvalResult]:
            out = []
            try:
                for task in tasks_of[item]:
                    out.append(
                        await run_task(
                            task,
                            item,
                            run_config,
                            run_options,
                            resume=resume,
                            redactor=redactor,
                            model_args=None if given else model_args,
                            display=display,
                        )
                    )
            finally:
                if not given:
                    # Close this loop's connections; a later call opens new ones.
                    await item.close()
            return out

        # Models run side by side: each has its own connection limit and journal.
        per_model = await asyncio.gather(*(run_model(item, given) for item, given in built))
    finally:
        _built_helpers.reset(token)
        if display is not None:
            display.close()
        for helper in helpers:
            await helper.close()
    results = [result for group in per_model for result in group]
    failed = [r for r in results if r.status == "error"]
    if failed:
        message = "; ".join(f"{r.model} on {r.task}: {r.message}" for r in failed)
        if len(results) == 1:
            message = str(failed[0].message)
        elif len(failed) > 1:
            message = f"{len(failed)} of {len(results)} runs stopped: {message}"
        raise EvalError(message, results)
    return results


def _preflight(
    tasks_of: dict[Model, list[Task]],
    built: list[tuple[Model, bool]],
    run_config: GenerateConfig,
    options: RunOptions,
    resume: str | Path | Journal | None,
    model_args: dict[str, Any],
) -> Journal | None:
    """The checks made before any journal or sample (gauge.evaluation.preflight).

    Returns the journal to resume, read once here.
    """

    def resolved(model: Model, task: Task) -> GenerateConfig:
        return resolve_settings(model.config, task.config, run_config).resolved

    log_dir = options.log_dir if resume is None else None
    for model, _ in built:
        preflight.check_run(tasks_of[model], [model], resolved, options.epochs, log_dir)
    if resume is None:
        return None
    journal = resume if isinstance(resume, Journal) else read_journal(resume)
    model, given = built[0]
    args = model.api.model_args if given else model_args
    task = tasks_of[model][0]
    preflight.check_resume(journal, task, model, resolved(model, task), args)
    return journal


def eval(
    tasks: TaskSpec | Sequence[TaskSpec],
    model: str | Model | Sequence[str | Model] | None = None,
    **kwargs: Any,
) -> list[EvalResult]:
    """Run tasks on models and return their results (blocking; see `eval_async`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(eval_async(tasks, model, **kwargs))
    from gauge.model.sync import run_sync

    # Inside a running loop (Jupyter): run on gauge's background loop.
    return run_sync(eval_async(tasks, model, **kwargs))
