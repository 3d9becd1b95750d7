"""The ``clickstream`` command: the local stack, SQL over the lake, and each service's entry point.

Settings are read once here and handed to the command that runs.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import sys
from pathlib import Path

import click

from clickstream.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


@click.group()
def cli() -> None:
    """clickstream: self-hosted clickstream analytics."""


# --- the local stack ---------------------------------------------------------------
@cli.command()
@click.option("--detach", "-d", is_flag=True, help="Run in the background and return once ready.")
def up(detach: bool) -> None:
    """Start the whole stack (S3, broker, API, processor, reactor, sink, dashboard)."""
    from clickstream.stack.launcher import up as launch

    sys.exit(launch(_settings(), detach=detach))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show each component of the local stack: up/down, pid, port, URL."""
    from clickstream.stack.launcher import component_status, format_status

    result = component_status(_settings())
    click.echo(json.dumps(result, indent=2) if as_json else format_status(result))
    sys.exit(0 if result["running"] else 3)


@cli.command()
def down() -> None:
    """Stop the local stack started with `clickstream up --detach`."""
    from clickstream.stack.launcher import down as stop

    sys.exit(stop(_settings()))


# --- SQL -----------------------------------------------------------------------------
@cli.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def query(sql: str, fmt: str) -> None:
    """Run SQL over the lake with DuckDB, e.g. "select count(*) from events"."""
    from query.engine import QueryError, connect, run_query

    try:
        columns, rows = run_query(connect(_settings()), sql)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=2))
    else:
        click.echo(format_table(columns, rows))


def format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |", line]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    out += [line, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"]
    return "\n".join(out)


# --- service entry points (the local stack, containers and systemd units run these) ---
@cli.command()
def topics() -> None:
    """Create the stack's Kafka topics (existing ones are kept)."""
    from clickstream.kafka import create_topics

    created = asyncio.run(create_topics(_settings()))
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@cli.command()
def api() -> None:
    """Run the ingest API."""
    from ingest_api.main import run

    run(_settings())


@cli.command()
def processor() -> None:
    """Run the Faust stream processor worker."""
    from stream_processor.app import run

    run(_settings())


@cli.command()
def reactor() -> None:
    """Run the reactor (logs reactions, delivers them to the webhook)."""
    from reactors.main import run

    run(_settings())


@cli.command()
def sink() -> None:
    """Run the lake sink (events to Parquet)."""
    from sink.main import run

    run(_settings())


@cli.command()
def dashboard() -> None:
    """Run the Streamlit dashboard."""
    import dashboard as package

    settings = _settings()
    app = Path(package.__file__).resolve().parent / "app.py"
    os.execv(
        sys.executable,
        [
            sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", settings.host,
            "--server.port", str(settings.dashboard_port),
            "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer",
        ],
    )


def main() -> None:
    cli()
