"""Lake-side health of the pipeline: how fresh each table is and what was rejected.

Everything is measured against ``now`` (passed in). The Kafka side (consumer lag) lives in
``dashboard/kafka_health.py``, since it talks to the broker rather than the lake.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd


def lake_freshness(con: duckdb.DuckDBPyConnection, now: datetime, minutes: int = 5) -> pd.DataFrame:
    """Per lake table: its newest row's time, seconds since then, and rows of the last ``minutes`` per second.

    The time is when the row entered the pipeline: ``received_at`` for events and invalid events
    (so ``age_s`` of events is the event-to-lake freshness), the window's end for metrics, the
    creation for reactions and the end for sessions. Only the newest two day partitions of each
    table are read.
    """
    since = now - timedelta(minutes=minutes)
    columns = {"events": "received_at", "invalid_events": "received_at", "metrics": "window_end",
               "sessions": "session_end", "reactions": "created_at"}
    parts = [
        f"""SELECT '{table}' AS "table", max({column}) AS newest,
                   count(*) FILTER (WHERE {column} >= ? AND {column} <= ?) AS recent
            FROM {table} WHERE dt >= (SELECT max(dt) FROM {table}) - 1"""
        for table, column in columns.items()
    ]
    params: list = []
    for _ in columns:
        params += [since, now]
    df = con.execute(" UNION ALL ".join(parts), params).df()
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
