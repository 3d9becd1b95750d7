"""The dashboard's questions to the lake, as functions returning DataFrames."""

from __future__ import annotations

import duckdb
import pandas as pd

from query.engine import refresh_views


def overview(con: duckdb.DuckDBPyConnection) -> dict:
    row = con.execute(
        """SELECT count(*) AS events,
                  count(*) FILTER (WHERE type = 'page') AS page_views,
                  count(DISTINCT coalesce(user_id, anonymous_id)) AS visitors,
                  count(DISTINCT session_id) AS sessions,
                  max(timestamp) AS last_event
           FROM events"""
    ).fetchone()
    return dict(zip(["events", "page_views", "visitors", "sessions", "last_event"], row))


def per_minute(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        """SELECT date_trunc('minute', timestamp) AS minute,
                  count(*) AS events,
                  count(*) FILTER (WHERE type = 'page') AS page_views
           FROM events GROUP BY 1 ORDER BY 1"""
    ).df()


def top_pages(con: duckdb.DuckDBPyConnection, limit: int = 10) -> pd.DataFrame:
    return con.execute(
        """SELECT path, count(*) AS page_views FROM events
           WHERE type = 'page' AND path IS NOT NULL
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?""",
        [limit],
    ).df()


def load(con: duckdb.DuckDBPyConnection, settings) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    refresh_views(con, settings)  # objects written since the last look become visible
    return overview(con), per_minute(con), top_pages(con)
