"""`gauge models`: every provider, its extra, env vars and honoured config fields."""

from __future__ import annotations

import click


@click.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models_command(as_json: bool) -> None:
    """List providers: extra, whether it is installed, key and base-URL env vars,
    what each can do (chat, streaming, loglikelihood) and the GenerateConfig
    fields it honours."""
    from gauge.model.catalog import provider_rows

    rows = provider_rows()
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for row in rows:
        extra = row["extra"] or "-"
        status = "installed" if row["installed"] else f"missing: pip install 'gauge[{extra}]'"
        if row.get("error"):
            status = f"failed to load: {row['error']}"
        click.echo(f"{row['provider']}/  extra={extra}  {status}")
        click.echo(
            f"    key: {', '.join(row['api_key_vars']) or '-'}"
            f"{'' if row['needs_api_key'] else ' (optional)'}"
            f"    base url: {', '.join(row['base_url_vars']) or '-'}"
        )
        can = [c for c in ("chat", "streaming", "loglikelihood") if row.get(c)]
        click.echo(f"    can: {', '.join(can) or 'text completion only'}")
        click.echo(f"    honours: {', '.join(row['honours']) or '-'}")
