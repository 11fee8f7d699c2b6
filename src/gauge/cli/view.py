"""`gauge view LOG...`: the journals as one self-contained HTML viewer, or served live."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="view", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    envvar="GAUGE_VIEW_OUTPUT",
    type=click.Path(dir_okay=False),
    help="Where to write the HTML viewer (one file; opens offline).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Serve LOGS (one folder) on 127.0.0.1 instead; the page refreshes as runs write.",
)
@click.option(
    "--port",
    default=7575,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port for --serve (0: any free port).",
)
def view_command(logs: tuple[str, ...], output: str, serve: bool, port: int) -> None:
    """Write an HTML viewer of LOGS (journal files, or directories of them)."""
    from gauge.errors import ConfigError

    if serve:
        from gauge.view.server import serve_folder

        if len(logs) != 1 or not Path(logs[0]).is_dir():
            raise ConfigError("--serve takes one log folder (e.g. gauge view --serve logs/)")
        serve_folder(Path(logs[0]), port, say=click.echo)
        return

    from gauge.view.costs import total_cost
    from gauge.view.data import journal_paths, load_runs
    from gauge.view.page import build_page

    folder = Path(output).parent
    if not folder.is_dir():  # said before the journals are read, not after
        if folder.exists():
            raise ConfigError(f"cannot write {output}: {folder} is a file; give another -o")
        raise ConfigError(
            f"cannot write {output}: the folder {folder} does not exist; "
            f"create it (mkdir -p {folder}) or give another -o"
        )
    runs = load_runs(journal_paths(logs))
    try:
        Path(output).write_text(build_page(runs), encoding="utf-8")
    except OSError as ex:
        raise ConfigError(f"cannot write {output}: {ex.strerror}; give another -o") from None
    click.echo(f"report: {output} ({len(runs)} run(s), {total_cost([r.log for r in runs])})")
