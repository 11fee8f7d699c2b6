"""`gauge view LOG...`: write one static HTML report (opens offline) from eval journals."""

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
    help="Where to write the HTML report.",
)
def view_command(logs: tuple[str, ...], output: str) -> None:
    """Write an HTML report of LOGS (journal files, or directories of them)."""
    from gauge.errors import ConfigError
    from gauge.evaluation.report import build_report
    from gauge.evaluation.rows import read_log

    folder = Path(output).parent
    if not folder.is_dir():  # said before the journals are read, not after
        if folder.exists():
            raise ConfigError(f"cannot write {output}: {folder} is a file; give another -o")
        raise ConfigError(
            f"cannot write {output}: the folder {folder} does not exist; "
            f"create it (mkdir -p {folder}) or give another -o"
        )
    paths: list[Path] = []
    for item in logs:
        path = Path(item)
        paths.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    if not paths:
        raise ConfigError("no .jsonl journals found in the given directories; pass journal files")
    report = build_report([read_log(p) for p in paths])
    try:
        Path(output).write_text(report, encoding="utf-8")
    except OSError as ex:
        raise ConfigError(f"cannot write {output}: {ex.strerror}; give another -o") from None
    click.echo(f"report: {output} ({len(paths)} run(s))")
