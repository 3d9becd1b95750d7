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
    print_rows(columns, rows, fmt)


def print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=2))
    else:
        click.echo(format_table(columns, rows))


# --- ready-made analyses ---------------------------------------------------------------
def _range_options(command):
    options = [
        click.option("--days", type=float, default=7.0, show_default=True, help="Look back this many days."),
        click.option("--since", type=click.DateTime(), help="Start (UTC); overrides --days."),
        click.option("--until", type=click.DateTime(), help="End (UTC, exclusive); default now."),
        click.option("--source", help="Only this source."),
        click.option("--exclude-bots", is_flag=True, help="Leave out events flagged as bots."),
        click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_analysis(function, kwargs: dict, *args, **params) -> None:
    from datetime import datetime, timedelta, timezone

    from query.analyses import Range
    from query.engine import QueryError, connect

    utc = timezone.utc
    until = kwargs["until"].replace(tzinfo=utc) if kwargs["until"] else datetime.now(utc)
    since = kwargs["since"].replace(tzinfo=utc) if kwargs["since"] else until - timedelta(days=kwargs["days"])
    time_range = Range(since, until, source=kwargs["source"], exclude_bots=kwargs["exclude_bots"])
    try:
        df = function(connect(_settings()), time_range, *args, **params)
    except (QueryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # DuckDB errors (e.g. an unreachable lake) are shown, not dumped as tracebacks
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    # pandas holds a missing value as NaN or NaT (a session without page views has no entry
    # page): shown as NULL, and as null in JSON, like the results of `clickstream query`.
    df = df.astype(object).where(df.notna(), None)
    print_rows(list(df.columns), [tuple(r) for r in df.itertuples(index=False)], kwargs["fmt"])


@cli.group()
def analyze() -> None:
    """Ready-made analyses over the lake (traffic, funnel, paths, retention, experiment, ...)."""


@analyze.command("traffic")
@_range_options
@click.option("--bucket", type=click.Choice(["hour", "day"]), default="day", show_default=True)
def analyze_traffic(bucket, **kwargs) -> None:
    """Events, page views, visitors and sessions per hour or day."""
    from query.analyses import traffic

    _run_analysis(traffic, kwargs, bucket)


@analyze.command("top-pages")
@_range_options
@click.option("--limit", type=int, default=10, show_default=True)
def analyze_top_pages(limit, **kwargs) -> None:
    """Most viewed pages."""
    from query.analyses import top_pages

    _run_analysis(top_pages, kwargs, limit)


@analyze.command("top-referrers")
@_range_options
@click.option("--limit", type=int, default=10, show_default=True)
def analyze_top_referrers(limit, **kwargs) -> None:
    """Hosts that referred the most page views."""
    from query.analyses import top_referrers

    _run_analysis(top_referrers, kwargs, limit)


@analyze.command("funnel")
@_range_options
@click.option("--step", "steps", multiple=True, required=True,
              help="A page path (/pricing) or an event name (Order Completed, or event:/odd-name); in order.")
@click.option("--within", default="session", show_default=True,
              help="'session', or a number of minutes from the first step.")
def analyze_funnel(steps, within, **kwargs) -> None:
    """Units reaching each step in order, with conversion and drop-off."""
    from query.analyses import Step, funnel

    if within != "session" and not within.isdigit():
        raise click.BadParameter("'session' or a whole number of minutes", param_hint="--within")
    _run_analysis(funnel, kwargs, [Step.parse(s) for s in steps], within if within == "session" else int(within))


@analyze.command("paths")
@_range_options
@click.option("--page", required=True, help="The page path to look from.")
@click.option("--direction", type=click.Choice(["next", "previous"]), default="next", show_default=True)
@click.option("--limit", type=int, default=10, show_default=True)
def analyze_paths(page, direction, limit, **kwargs) -> None:
    """Pages viewed right after (or before) a page in the same session."""
    from query.analyses import paths

    _run_analysis(paths, kwargs, page, direction, limit)


@analyze.command("retention")
@_range_options
@click.option("--period", type=click.Choice(["day", "week"]), default="week", show_default=True)
def analyze_retention(period, **kwargs) -> None:
    """Cohorts by first active period and how many return in later periods."""
    from query.analyses import retention

    _run_analysis(retention, kwargs, period)


@analyze.command("experiment")
@_range_options
@click.option("--id", "experiment_id", required=True, help="experimentId (or experimentName) of Experiment Viewed.")
@click.option("--conversion", default="Order Completed", show_default=True, help="The conversion event.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
def analyze_experiment(experiment_id, conversion, confidence, **kwargs) -> None:
    """Conversion per variant, lift against the first variant, confidence interval and p-value."""
    from query.analyses import experiment

    _run_analysis(experiment, kwargs, experiment_id, conversion, confidence)


@analyze.command("sessions")
@_range_options
@click.option("--timeout", "timeout_minutes", type=click.IntRange(min=1), default=30, show_default=True,
              help="Minutes of inactivity.")
def analyze_sessions(timeout_minutes, **kwargs) -> None:
    """Sessions rebuilt from events alone, in SQL."""
    from query.analyses import sessionize

    _run_analysis(sessionize, kwargs, timeout_minutes)


def format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |", line]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    out += [line, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"]
    return "\n".join(out)


@cli.command()
@click.option("--engine", type=click.Choice(["athena", "trino"]), required=True)
@click.option("--schema", "catalog_schema", default="hive.clickstream", show_default=True,
              help="Trino catalog.schema to create the tables in.")
def ddl(engine, catalog_schema) -> None:
    """Print CREATE TABLE statements so Athena or Trino can query the same lake."""
    from query.ddl import ddl as statements

    click.echo(statements(engine, _settings().s3_bucket, catalog_schema), nl=False)


@cli.group()
def replay() -> None:
    """Send stored data back through the pipeline."""


@replay.command("invalid")
@click.option("--since", type=click.DateTime(), required=True, help="Rejections received from (UTC).")
@click.option("--until", type=click.DateTime(), help="...until (UTC, exclusive); default now.")
@click.option("--reason", help="Only rejections whose reason contains this text.")
@click.option("--source", help="Only this source's rejections.")
@click.option("--api", "api_url", help="The API to send to; default the local stack's.")
@click.option("--dry-run", is_flag=True, help="Show how many would be sent, send nothing.")
def replay_invalid(since, until, reason, source, api_url, dry_run) -> None:
    """Replay rejected events (from the invalid_events table) through the API's validation."""
    from datetime import datetime, timezone

    import httpx

    from clickstream.sources import SourceRegistry
    from ingest_api.replay import StoredRejection
    from ingest_api.replay import replay as run_replay
    from query.engine import connect

    settings = _settings()
    utc = timezone.utc
    clauses, params = ["received_at >= ?", "received_at < ?"], [since.replace(tzinfo=utc),
                                                                (until.replace(tzinfo=utc) if until else
                                                                 datetime.now(utc))]
    if reason:
        clauses.append("contains(reason, ?)")
        params.append(reason)
    if source:
        clauses.append("source = ?")
        params.append(source)
    try:
        rows = connect(settings).execute(
            "SELECT source, reason, payload, endpoint, batch_index, request_id FROM invalid_events "
            f"WHERE {' AND '.join(clauses)} ORDER BY received_at", params).fetchall()
    except Exception as exc:
        raise click.ClickException(f"cannot read invalid_events: {exc}") from None
    rejections = [StoredRejection(*row) for row in rows]
    click.echo(f"{len(rejections)} rejected events match")
    if dry_run or not rejections:
        return
    keys = {s.name: s.write_key for s in SourceRegistry.from_settings(settings).sources}
    with httpx.Client(base_url=api_url or settings.url(settings.api_port), timeout=30) as client:
        try:
            report = run_replay(rejections, keys, client)
        except (httpx.HTTPError, RuntimeError) as exc:
            raise click.ClickException(f"replay stopped: {exc}") from None
    click.echo(f"sent {report.sent}: {report.accepted} accepted, {report.rejected} rejected again")
    for problem in report.unsendable:
        click.echo(f"not sent: {problem}", err=True)


# --- synthetic traffic ------------------------------------------------------------------
@cli.command()
@click.option("--rate", type=float, default=20.0, show_default=True, help="Events per second, on average.")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds to send for.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same events (message ids too).")
@click.option("--api", "api_url", help="The API to send to; default the local stack's.")
@click.option("--write-key", help="Default: the demo source's.")
@click.option("--start", type=click.DateTime(),
              help="Backfill: events from this time (UTC) until now, sent within --duration.")
@click.option("--expected", "expected_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the aggregates the pipeline should hold (JSON) to this file.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests in flight at most.")
def loadgen(rate, duration, seed, api_url, write_key, start, expected_path, concurrency) -> None:
    """Send realistic synthetic visitors through the API: funnels, campaigns, devices, an A/B test,
    bots, late and duplicate deliveries, and some invalid events."""
    from datetime import datetime, timezone

    import httpx

    from clickstream.sources import demo_write_key
    from loadgen.expected import expected_aggregates
    from loadgen.plan import plan_run
    from loadgen.sender import send_deliveries

    settings = _settings()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the progress bar
    now = datetime.now(timezone.utc)
    try:
        plan = plan_run(seed, rate=rate, duration_s=duration, now=now,
                        backfill_from=start.replace(tzinfo=timezone.utc) if start else None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    key = write_key or demo_write_key(settings)
    url = api_url or settings.url(settings.api_port)
    click.echo(f"sending {len(plan.calls)} events in {len(plan.deliveries)} requests to {url}, "
               f"event times {plan.start:%Y-%m-%d %H:%M:%S} + {plan.span}", err=True)

    async def run(bar):
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await send_deliveries(plan.deliveries, client, key, concurrency=concurrency,
                                         on_done=lambda d: bar.update(len(d.calls)))

    with click.progressbar(length=sum(len(d.calls) for d in plan.deliveries), label="events",
                           file=sys.stderr, show_pos=True) as bar:
        report = asyncio.run(run(bar))
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(report.statuses.items(), key=str))
    click.echo(f"{report.calls_sent} events in {report.elapsed_s:.1f} s "
               f"({report.calls_sent / max(report.elapsed_s, 1e-9):.0f}/s); answers {statuses}; "
               f"{report.retries} retries")
    expected = expected_aggregates(report.acknowledged)
    click.echo(f"accepted {expected['events_accepted']} ({expected['distinct_events']} distinct), "
               f"rejected {expected['invalid_rejected']} invalid, {expected['sessions']} sessions")
    if expected_path is not None:
        expected_path.write_text(json.dumps(expected, indent=2) + "\n")
        click.echo(f"expected aggregates written to {expected_path}")
    for problem in report.mismatches[:10]:
        click.echo(f"unexpected answer: {problem}", err=True)
    for delivery, reason in report.failed[:10]:
        click.echo(f"not delivered ({len(delivery.calls)} events): {reason}", err=True)
    if report.failed or report.mismatches:
        raise click.ClickException(f"{len(report.failed)} requests failed, "
                                   f"{len(report.mismatches)} answers differed from the model")


# --- lake maintenance -----------------------------------------------------------------
def _progress(items, label):
    items = list(items)
    if not items:
        return
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield from bar


@cli.command()
@click.option("--table", "tables", multiple=True, help="Only these tables (default: all).")
@click.option("--target-mb", type=int, default=128, show_default=True, help="Size of the merged objects.")
@click.option("--grace-s", type=float, default=None,
              help="Merged-away objects are deleted only once their replacement is this old "
                   "[default: CLICKSTREAM_COMPACT_GRACE_S, 300].")
@click.option("--no-offset-check", is_flag=True,
              help="Merge without asking Kafka how far the sink has committed (only when the sink is stopped).")
def compact(tables, target_mb, grace_s, no_offset_check) -> None:
    """Merge the lake's small objects of closed hours into large ones; readers never see a row twice."""
    from datetime import timedelta

    from sink.maintenance import LakeBusy, compact_lake, sink_committed

    settings = _settings()
    committed = None
    if not no_offset_check:
        try:
            committed = asyncio.run(sink_committed(settings))
        except Exception as exc:
            raise click.ClickException(
                f"cannot read the sink's committed offsets from Kafka ({exc}); "
                "with the sink stopped, --no-offset-check compacts anyway") from None
    grace = settings.compact_grace_s if grace_s is None else grace_s
    try:
        report = compact_lake(settings, committed, target_bytes=target_mb * 1024 * 1024,
                              grace=timedelta(seconds=grace), tables=list(tables) or None, progress=_progress)
    except LakeBusy as exc:
        raise click.ClickException(f"{exc}; try again once it has ended") from None
    click.echo(f"merged {report.merged_from} objects into {report.merged_objects} ({report.rows} rows); "
               f"deleted {report.deleted} merged-away objects")


@cli.command()
@click.option("--days", type=int, required=True, help="Keep this many days (today included).")
@click.option("--table", "tables", multiple=True, help="Only these tables (default: all).")
def retention(days, tables) -> None:
    """Delete the lake's day partitions older than --days."""
    from datetime import datetime, timedelta, timezone

    from sink.compaction import apply_retention
    from sink.destination import LakeDestination
    from sink.maintenance import LakeBusy, maintenance_lock

    if days < 1:
        raise click.BadParameter("keep at least one day", param_hint="--days")
    keep_from = datetime.now(timezone.utc).date() - timedelta(days=days - 1)
    settings = _settings()
    try:
        with maintenance_lock(settings):
            deleted = apply_retention(LakeDestination.from_settings(settings), keep_from=keep_from,
                                      tables=list(tables) or None, progress=_progress)
    except LakeBusy as exc:
        raise click.ClickException(f"{exc}; try again once it has ended") from None
    click.echo(f"deleted {deleted} objects before {keep_from}")


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
    """Run the reactor (routes reactions to webhooks, notifications, the log and custom handlers)."""
    from reactors.errors import RoutesFileError
    from reactors.main import run

    try:
        run(_settings())
    except RoutesFileError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def reactions() -> None:
    """The reactor's dead letters."""


@reactions.command("replay")
@click.option("--since", type=click.DateTime(), help="Dead letters from (UTC); default all.")
@click.option("--handler", help="Only this handler's dead letters.")
@click.option("--dry-run", is_flag=True, help="Show how many would be sent, send nothing.")
def reactions_replay(since, handler, dry_run) -> None:
    """Resend dead letters through their handler (as named in the current routes) and record the result."""
    from datetime import timezone

    from reactors.dispatch import ReactorStats
    from reactors.errors import RoutesFileError
    from reactors.main import open_dispatcher
    from reactors.replay import replay_dead_letters, select_dead_letters
    from reactors.store import read_dead_letters

    settings = _settings()

    async def run():
        letters = select_dead_letters(await read_dead_letters(settings), handler=handler,
                                      since=since.replace(tzinfo=timezone.utc) if since else None)
        click.echo(f"{len(letters)} dead letters match")
        if dry_run or not letters:
            return None
        async with open_dispatcher(settings, ReactorStats()) as dispatcher:
            return await replay_dead_letters(letters, dispatcher)

    try:
        report = asyncio.run(run())
    except RoutesFileError as exc:
        raise click.ClickException(str(exc)) from None
    if report is None:
        return
    click.echo(f"delivered {report.delivered}, failed again {report.failed} (new dead letters), "
               f"already delivered {report.already_delivered}")
    for problem in report.unknown_handler:
        click.echo(f"not sent, no such handler in the routes: {problem}", err=True)
    if report.failed or report.unknown_handler:
        sys.exit(1)


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
