"""Entry point of the `gauge` command; subcommands load on first use."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from gauge import __version__
from gauge.errors import GaugeError, one_line

# name -> (module, attribute, one-line help shown by `gauge --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": (
        "gauge.cli.models",
        "models_command",
        "List providers, their keys and capabilities.",
    ),
    "cache": ("gauge.cli.cache", "cache_command", "Inspect, prune and explain the response cache."),
    "eval": ("gauge.cli.eval", "eval_command", "Run an eval task on one or more models."),
    "view": ("gauge.cli.view", "view_command", "Write an HTML report from eval journals."),
    "serve": ("gauge.cli.serve", "serve_command", "Serve a local model over OpenAI's API."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when run (keeps --help fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        if ctx.resilient_parsing:
            return click.Command(cmd_name, help=spec[2], short_help=spec[2])
        command: click.Command = getattr(importlib.import_module(spec[0]), spec[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # `gauge --help` (or -h) lists commands from COMMANDS without importing them.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="gauge")
def cli() -> None:
    """gauge: evaluate any language model through one interface."""


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; gauge errors print one line and exit with their code."""
    try:
        return cli.main(args=argv, prog_name="gauge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as ex:
        ex.show()
        sys.exit(ex.exit_code)
    except click.exceptions.Exit as ex:
        sys.exit(ex.exit_code)
    except GaugeError as ex:
        click.echo(f"error: {one_line(ex)}", err=True)
        sys.exit(ex.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except ValueError as ex:  # pydantic validation of user input, bad values
        click.echo(f"error: {one_line(ex)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
