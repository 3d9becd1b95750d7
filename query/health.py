"""Lake-side health of the pipeline: how fresh each table is and what was rejected.

Everything is measured against ``now`` (passed in). The Kafka side (consumer lag) lives in
``dashboard/kafka_health.py``, since it talks to the broker rather than the lake.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd


FRESHNESS_COLUMNS = {"events": "received_at", "invalid_events": "received_at", "metrics": "window_end",
                     "sessions": "session_end", "reactions": "created_at"}


def lake_freshness(con: duckdb.DuckDBPyConnection, now: datetime, minutes: int = 5) -> pd.DataFrame:
    """Per lake table: its newest row's time, seconds since then, and rows of the last ``minutes`` per second.

    The time is when the row entered the pipeline: ``received_at`` for events and invalid events
    (so ``age_s`` of events is the event-to-lake freshness), the window's end for metrics, the
    creation for reactions and the end for sessions.
    """
    since = now - timedelta(minutes=minutes)
    rows = []
    for table, column in FRESHNESS_COLUMNS.items():
        # The last two days' partitions first; the whole table only when they are empty. (Filtering
        # on max(dt) in a subquery would be neater, but DuckDB 1.5.5 fails on max(dt) of a table
        # with an all-NULL column: "INTERNAL Error: Attempted to access index ...".)
        newest, recent = con.execute(
            f"SELECT max({column}), count(*) FILTER (WHERE {column} >= ? AND {column} <= ?) FROM {table} "
            "WHERE dt >= ?::DATE", [since, now, (now - timedelta(days=1)).date()]).fetchone()
        if newest is None:
            newest = con.execute(f"SELECT max({column}) FROM {table}").fetchone()[0]
        rows.append({"table": table, "newest": newest, "recent": recent})
    df = pd.DataFrame(rows)
    newest = pd.to_datetime(df["newest"], utc=True)
    df["age_s"] = (pd.Timestamp(now) - newest).dt.total_seconds()
    df["rows_per_s"] = df.pop("recent") / (minutes * 60)
    return df


def invalid_by_reason(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime,
                      source: str | None = None) -> pd.DataFrame:
    """Rejected events by reason, with the newest payload of each as a sample."""
    clauses = ["dt BETWEEN ?::DATE AND ?::DATE", "received_at >= ?", "received_at < ?"]
    params: list = [since.date(), until.date(), since, until]
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    return con.execute(f"""
        SELECT reason, count(*) AS events, max(received_at) AS last_seen,
               arg_max(source, received_at) AS source, arg_max(endpoint, received_at) AS endpoint,
               arg_max(payload, received_at) AS sample
        FROM invalid_events WHERE {' AND '.join(clauses)}
        GROUP BY 1 ORDER BY 2 DESC, 1""", params).df()
