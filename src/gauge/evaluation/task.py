"""Task, the @task decorator, and loading tasks from `path.py[@name]` with -T arguments."""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gauge.errors import GaugeError, one_line
from gauge.evaluation.dataset import Dataset, Sample, as_dataset
from gauge.evaluation.metrics import Metric, Reducer, reducer
from gauge.evaluation.scorer import Scorer
from gauge.evaluation.solver import Solver, chain, generate
from gauge.model.config import GenerateConfig

if TYPE_CHECKING:
    from gauge.model.model import Model


class TaskError(GaugeError, ValueError):
    """A task file, task name or task argument is wrong."""

    exit_code = 2


class Task:
    """What to evaluate: a dataset, the solvers that answer it, and how to score it."""

    def __init__(
        self,
        dataset: Dataset | Iterable[Sample] | Iterable[dict[str, Any]],
        solver: Solver | Sequence[Solver] | None = None,
        scorer: Scorer | Sequence[Scorer] | None = None,
        config: GenerateConfig | None = None,
        epochs: int = 1,
        epoch_reducer: str | Reducer = "mean",
        metrics: Sequence[Metric] | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        plan: Solver | Sequence[Solver] | None = None,
    ) -> None:
        if epochs < 1:
            raise TaskError(f"epochs must be >= 1, got {epochs}")
        if plan is not None:  # Inspect AI's older name for the solvers
            if solver is not None:
                raise TaskError("give solver= or plan= (its older name), not both")
            solver = plan
        self.dataset = as_dataset(dataset)
        solvers = [generate()] if solver is None else [solver] if callable(solver) else list(solver)
        self.solvers = solvers
        self.solver = chain(solvers)
        self.scorers: list[Scorer] = (
            [] if scorer is None else [scorer] if isinstance(scorer, Scorer) else list(scorer)
        )
        for item in self.scorers:
            if not isinstance(item, Scorer):
                raise TaskError(
                    f"scorer {item!r} is not a Scorer; build it with gauge.scorer (e.g. match())"
                )
        self.config = config or GenerateConfig()
        self.epochs = epochs
        self.epoch_reducer = reducer(epoch_reducer)
        self.metrics = list(metrics) if metrics is not None else None
        self.name = name or self.dataset.name
        self.named = name is not None
        self.metadata = metadata or {}
        self.spec: str | None = None
        """`path.py@name` when loaded from a file (recorded so --resume can rebuild it)."""
        self.args: dict[str, Any] = {}
        """The -T arguments the task was built with."""

    def __repr__(self) -> str:
        return f"Task({self.name!r}, samples={len(self.dataset)}, epochs={self.epochs})"


F = TypeVar("F", bound=Callable[..., Task])

TASK_ATTR = "__gauge_task__"


def task(fn: F | None = None, *, name: str | None = None) -> Any:
    """Mark a function returning a Task so `gauge eval file.py@name` can find it."""

    def decorate(func: F) -> F:
        task_name = name or func.__name__

        @functools.wraps(func)
        def build(*args: Any, **kwargs: Any) -> Task:
            result = func(*args, **kwargs)
            if not isinstance(result, Task):
                raise TaskError(f"@task {task_name} returned {type(result).__name__}, not a Task")
            if not result.named:
                result.name = task_name
            result.args = dict(kwargs)
            return result

        setattr(build, TASK_ATTR, task_name)
        return build  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


# -- task functions that take the model being evaluated (Inspect AI's `def f(model)`) --

MODEL_PARAMETER = "model"


def takes_model(factory: Callable[..., Any]) -> bool:
    """Whether a task function has a `model` parameter."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return MODEL_PARAMETER in parameters


class UnbuiltTask(TaskError, AttributeError):
    """A TaskForModel's dataset, solvers or scorers were read before it was built."""


class TaskForModel(Task):
    """A task function taking `model`, with its other arguments; built per model.

    Only `name`, `spec`, `args` and `epoch_reducer` (set to override the built
    task's) are available before `build`.
    """

    def __init__(
        self, factory: Callable[..., Any], args: dict[str, Any], name: str, spec: str | None
    ) -> None:
        # Not Task.__init__: there is no dataset until the model is known.
        if MODEL_PARAMETER in args:
            raise TaskError(
                f"task {name} receives the model being evaluated as `model`; "
                "do not pass model as a task argument (-T), choose it with --model"
            )
        self.factory = factory
        self.args = dict(args)
        self.name = name
        self.named = True
        self.spec = spec

    def build(self, model: Model) -> Task:
        """The Task for `model`: the function called with the args and `model=model`."""
        try:
            built = self.factory(**self.args, model=model)
        except GaugeError:
            raise
        except Exception as ex:
            raise TaskError(
                f"task {self.name} failed to build for {model.name}: "
                f"{type(ex).__name__}: {one_line(ex)}"
            ) from ex
        if not isinstance(built, Task):
            raise TaskError(f"task {self.name} returned {type(built).__name__}, not a Task")
        built.spec = self.spec
        built.args = dict(self.args)
        if not built.named:
            built.name = self.name
        if "epoch_reducer" in vars(self):  # set by --epochs-reducer on the deferred task
            built.epoch_reducer = reducer(vars(self)["epoch_reducer"])
        return built

    def __getattr__(self, name: str) -> Any:
        raise UnbuiltTask(
            f"task {self.name} takes the model being evaluated, so its {name} is known "
            "only once it is built for a model: run it with gauge.eval() or call build(model)"
        )

    def __repr__(self) -> str:
        return f"TaskForModel({self.name!r})"


def tasks_for_model(tasks: Sequence[Task], model: Model) -> list[Task]:
    """`tasks` with every TaskForModel built for `model`."""
    return [t.build(model) if isinstance(t, TaskForModel) else t for t in tasks]


def parse_task_args(pairs: Iterable[str]) -> dict[str, Any]:
    """`["k=v", ...]` as a dict; values are read by `parse_value`."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise TaskError(f"-T {pair!r} must be name=value, e.g. -T limit=10")
        args[key] = parse_value(raw)
    return args


def parse_value(raw: str) -> Any:
    """A flag value as YAML (`3`, `0.5`, `true`, `[a, b]`, `{k: v}`); other text stays text.

    Only explicit brackets make a list or mapping, so `ANSWER: B` stays a string.
    """
    import yaml

    text = raw.strip()
    if not text:
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return raw
    if isinstance(value, dict) and not text.startswith("{"):
        return raw
    if isinstance(value, list) and not text.startswith("["):
        return raw
    return raw if value is None and text not in ("null", "~", "None") else value


def load_task(spec: str, args: dict[str, Any] | None = None) -> Task:
    """The Task from `path.py` (its only @task) or `path.py@name`, built with `args`.

    A task function taking `model` gives a TaskForModel, built per model by the runner.
    """
    path_text, _, name = spec.partition("@")
    path = Path(path_text)
    if path.suffix != ".py":
        raise TaskError(
            f"task {spec!r} must be a Python file, e.g. examples/arithmetic.py@arithmetic"
        )
    if not path.is_file():
        raise TaskError(f"task file {path} not found; check the path")
    _check_not_inspect(path)
    module = _import_file(path)
    found = {
        getattr(obj, TASK_ATTR): obj for obj in vars(module).values() if hasattr(obj, TASK_ATTR)
    }
    if not found:
        raise TaskError(f"{path} defines no @task function; decorate one with @task")
    if not name:
        if len(found) > 1:
            raise TaskError(
                f"{path} has several tasks ({', '.join(sorted(found))}); pick one with {path}@NAME"
            )
        name = next(iter(found))
    if name not in found:
        raise TaskError(f"{path} has no task {name!r}; tasks: {', '.join(sorted(found))}")
    factory = found[name]
    args = args or {}
    _check_args(factory, args, name)
    if takes_model(factory):  # built once per evaluated model, by the runner
        return TaskForModel(factory, args, name, f"{path}@{name}")
    try:
        built: Task = factory(**args)
    except GaugeError:
        raise
    except Exception as ex:
        raise TaskError(f"task {name} failed to build: {type(ex).__name__}: {one_line(ex)}") from ex
    built.spec = f"{path}@{name}"
    built.args = dict(args)
    return built


def as_task(spec: Any) -> Task:
    """A Task from a Task, a `path.py[@name]` string or an @task function (called with
    no arguments; one taking `model` is held as a TaskForModel)."""
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, str):
        return load_task(spec)
    if callable(spec) and hasattr(spec, TASK_ATTR):
        if takes_model(spec):  # built per model once the models are known
            return TaskForModel(spec, {}, getattr(spec, TASK_ATTR), None)
        built = spec()
        if isinstance(built, Task):
            return built
    raise TaskError(f"{spec!r} is not a task; give a Task, an @task function or 'path.py@name'")


_INSPECT_IMPORT = re.compile(
    r"^\s*(?:from\s+inspect_ai[\w.]*\s+import|import\s+inspect_ai)\b", re.M
)
_GAUGE_IMPORT = re.compile(r"^\s*(?:from\s+gauge[\w.]*\s+import|import\s+gauge)\b", re.M)


def _check_not_inspect(path: Path) -> None:
    """An Inspect AI task file is refused with what to change, without running it."""
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
    except OSError as ex:
        raise TaskError(f"cannot read task file {path}: {ex.strerror}") from None
    if _INSPECT_IMPORT.search(source) and not _GAUGE_IMPORT.search(source):
        raise TaskError(
            f"{path} is an Inspect AI task (it imports inspect_ai); gauge runs its own task "
            "API, which mirrors Inspect's: change `from inspect_ai import Task, task` to "
            "`from gauge import Task, task` and inspect_ai.dataset/solver/scorer to "
            "gauge.dataset/solver/scorer, then run it again"
        )


def _check_args(factory: Callable[..., Any], args: dict[str, Any], name: str) -> None:
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(args) - set(params))
        if unknown:
            known = ", ".join(params) or "none"
            raise TaskError(
                f"task {name} has no argument {', '.join(unknown)}; its arguments: {known}"
            )
    hints = _hints(factory)
    for arg, value in args.items():
        expected = _expected(hints.get(arg, Any), value)
        if expected is not None:
            shown = value if isinstance(value, str) else repr(value)
            raise TaskError(f"-T {arg}={shown}: {arg} must be {expected} (task {name})")


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The task function's resolved annotations ({} when they cannot be resolved)."""
    import typing

    try:
        return typing.get_type_hints(inspect.unwrap(factory))
    except Exception:  # an annotation naming something that is not importable: no check
        return {}


def _expected(annotation: Any, value: Any) -> str | None:
    """What `annotation` asks for, when `value` (as -T parsed it) is not that; else None."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        wanted = [_expected(arg, value) for arg in typing.get_args(annotation)]
        if any(w is None for w in wanted):
            return None
        return " or ".join(dict.fromkeys(w for w in wanted if w))
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        return None if value in choices else "one of " + ", ".join(map(str, choices))
    if annotation is type(None):
        return None if value is None else "null"
    kind = origin or annotation
    checks: dict[Any, tuple[Callable[[Any], bool], str]] = {
        bool: (lambda v: isinstance(v, bool), "true or false"),
        int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
        list: (lambda v: isinstance(v, list), "a list, e.g. [a, b]"),
        tuple: (lambda v: isinstance(v, list), "a list, e.g. [a, b]"),
        dict: (lambda v: isinstance(v, dict), "a mapping, e.g. {k: v}"),
    }
    if kind in checks:
        fits, description = checks[kind]
        return None if fits(value) else description
    return None  # str, Any, Path, classes: -T text is passed as is


def _import_file(path: Path) -> Any:
    module_name = f"gauge_task_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # The task's own directory is importable, so helper modules beside it work.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except GaugeError:
        raise
    except Exception as ex:
        raise TaskError(f"{path} failed to import: {type(ex).__name__}: {one_line(ex)}") from ex
    finally:
        sys.path.pop(0)
    sys.modules[module_name] = module
    return module
