"""`gauge cache`: where the response cache is, what it holds, and why a request misses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from gauge.model.cache.explain import Explanation


@click.group(name="cache")
def cache_command() -> None:
    """Inspect and manage the response cache (one SQLite file shared by every model)."""


@cache_command.command(name="path")
def path_command() -> None:
    """Print the cache database file (GAUGE_CACHE_DIR moves it), or the shared cache."""
    from gauge.model.cache import cache_path

    click.echo(_shared() or str(cache_path()))


@cache_command.command(name="list")
@click.option("--expired", is_flag=True, help="List expired entries (what `prune` deletes).")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
def list_command(expired: bool, models: tuple[str, ...]) -> None:
    """List models with their entries and sizes, or the expired entries."""
    from gauge.model.cache.api import cache_list_expired, cache_models

    if expired:
        entries = cache_list_expired(list(models))
        for entry in entries:
            click.echo(f"{entry.key}  {entry.model}  expired {_when(entry.expires)}")
        click.echo(f"{len(entries)} expired entr{'y' if len(entries) == 1 else 'ies'}")
        _say_store()
        return
    rows = [row for row in cache_models() if not models or row[0] in models]
    for model, count, size in rows:
        click.echo(f"{model}  {count} entries  {_bytes(size)}")
    if not rows:
        click.echo("the cache is empty")
    _say_store()


@cache_command.command(name="size")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
def size_command(models: tuple[str, ...]) -> None:
    """Print the bytes stored per model, and the database file's size on disk."""
    from gauge.model.cache import cache_path, cache_size
    from gauge.model.cache.store import database_files

    for model, size in cache_size(list(models)):
        click.echo(f"{model}  {_bytes(size)}")
    if _say_store():
        return
    on_disk = sum(f.stat().st_size for f in database_files(cache_path()) if f.exists())
    click.echo(f"on disk: {_bytes(on_disk)}  ({cache_path()})")


@cache_command.command(name="clear")
@click.option("--model", default=None, help="Delete only this model's entries.")
@click.option(
    "--all", "everything", is_flag=True, help="Delete and recreate the database (repairs it)."
)
@click.option("--expired", is_flag=True, help="Delete expired entries (of --model, if given).")
def clear_command(model: str | None, everything: bool, expired: bool) -> None:
    """Delete one model's entries (--model), expired ones (--expired) or everything (--all)."""
    from gauge.errors import ConfigError
    from gauge.model.cache import cache_clear

    if model and everything:
        raise ConfigError(
            f"give --model {model} or --all, not both: --all clears every model's entries"
        )
    if expired and everything:
        raise ConfigError("give --expired or --all, not both: --all clears every entry")
    if not model and not everything and not expired:
        raise ConfigError("say what to clear: --model provider/name, or --all for everything")
    where = _where()
    if expired:
        _prune([model] if model else [], where)
    elif everything:
        cache_clear()
        click.echo(f"cleared the whole cache{where}")
    elif cache_clear(model or ""):
        click.echo(f"cleared {model}{where}")
    else:
        click.echo(f"nothing stored for {model}{where}")


@cache_command.command(name="prune")
def prune_command() -> None:
    """Delete every expired entry."""
    _prune([], _where())


def _prune(models: list[str], where: str) -> None:
    from gauge.model.cache import cache_list_expired, cache_prune

    if models:  # only these models' (an empty list would prune every model's)
        entries = cache_list_expired(models)
        count = cache_prune(entries) if entries else 0
    else:
        count = cache_prune()
    click.echo(f"pruned {count} expired entr{'y' if count == 1 else 'ies'}{where}")


@cache_command.command(name="explain")
@click.argument("request", required=False, type=click.Path(path_type=Path))
@click.option("--log", "log_file", type=click.Path(path_type=Path), help="An eval journal.")
@click.option("--sample", default=None, help="The sample id in the journal (with --log).")
@click.option("--epoch", type=int, default=None, help="Only this epoch of the sample.")
def explain_command(
    request: Path | None, log_file: Path | None, sample: str | None, epoch: int | None
) -> None:
    """Show whether a request hits the cache; on a miss, the nearest entry and what differs.

    REQUEST is a JSON/YAML file: {model, input, tools, tool_choice, config,
    base_url, epoch}. Or give --log JOURNAL --sample ID to explain a sample.
    """
    from gauge.errors import ConfigError
    from gauge.model.cache.explain import cache_explain, explain_log, load_request

    if request is not None and log_file is None:
        results = [cache_explain(load_request(request))]
    elif log_file is not None and request is None:
        if sample is None:
            raise ConfigError("--log needs --sample ID (the sample's id in the journal)")
        results = explain_log(log_file, sample, epoch)
    else:
        raise ConfigError("give a request file, or --log JOURNAL --sample ID (not both)")
    for i, result in enumerate(results):
        if i:
            click.echo()
        _render(result)
    _say_store()


def _render(result: Explanation) -> None:
    sample = "" if result.sample is None else f"sample {result.sample}  "
    epoch = "" if result.epoch is None else f"epoch {result.epoch}  "
    click.echo(f"{sample}{epoch}model {result.model}")
    click.echo(f"key {result.key}")
    verdict = "HIT" if result.hit else "MISS"
    click.echo(f"{verdict}: {result.reason}")
    if result.created is not None:
        click.echo(f"stored {_when(result.created)}")
    nearest = result.nearest
    if nearest is not None:
        click.echo(
            f"nearest entry {nearest.key} (stored {_when(nearest.created)}; "
            f"{nearest.equal} of {nearest.total} components equal, "
            f"{result.entries} entries for this model)"
        )
        for difference in nearest.differences:
            click.echo(f"  differs: {difference}")


def _shared() -> str | None:
    """The shared cache the commands act on, in words; None: the local database."""
    from gauge.model.cache.api import shared_store

    return shared_store()


def _where() -> str:
    shared = _shared()
    return "" if shared is None else f" in {shared}"


def _say_store() -> bool:
    """With the shared cache on, say so (`store: Redis at ...`); whether it is on."""
    shared = _shared()
    if shared is not None:
        click.echo(f"store: {shared}")
    return shared is not None


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
