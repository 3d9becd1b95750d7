"""Traffic figures the dashboard shows beside ``query.analyses``: session KPIs and breakdowns.

Sessions here are the ``session_id`` the stream processor stamps on each event (30 minutes of
inactivity), counted from the events in range, so the figures need only the ``events`` table.
A bounce is a session with at most one page view; a session's duration runs from its first to
its last event in range.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

import duckdb
import pandas as pd

from query.analyses import VISITOR, Range

# Columns a breakdown may group by; the name is put into SQL, so only these are accepted.
BREAKDOWNS = {
    "referrer_host": "referrer_host",
    "utm_campaign": "utm_campaign",
    "utm_source": "utm_source",
    "device_type": "device_type",
    "browser": "browser",
    "os": "os",
    "source": "source",
}


def summary(con: duckdb.DuckDBPyConnection, r: Range) -> dict:
    """Visitors, sessions, page views, bounce rate (0..1, None without sessions) and mean session seconds."""
    where, params = r.where()
    row = con.execute(f"""
        WITH s AS (
            SELECT session_id, count(*) FILTER (WHERE type = 'page') AS page_views,
                   epoch(max(timestamp) - min(timestamp)) AS duration_s
            FROM events WHERE {where} AND session_id IS NOT NULL GROUP BY 1)
        SELECT (SELECT count(*) FROM events WHERE {where}) AS events,
               (SELECT count(DISTINCT {VISITOR}) FROM events WHERE {where}) AS visitors,
               count(*) AS sessions,
               coalesce(sum(page_views), 0) AS page_views_in_sessions,
               avg(CASE WHEN page_views <= 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate,
               avg(duration_s) AS avg_session_s
        FROM s""", params * 3).fetchone()
    page_views = con.execute(f"SELECT count(*) FROM events WHERE {where} AND type = 'page'", params).fetchone()[0]
    events, visitors, sessions, _, bounce_rate, avg_session_s = row
    return {"events": events, "visitors": visitors, "sessions": sessions, "page_views": page_views,
            "bounce_rate": bounce_rate, "avg_session_s": avg_session_s}


def sessions_over_time(con: duckdb.DuckDBPyConnection, r: Range,
                       bucket: Literal["hour", "day"] = "day") -> pd.DataFrame:
    """Per bucket of session start: sessions, bounce rate and mean duration in seconds."""
    where, params = r.where()
    return con.execute(f"""
        WITH s AS (
            SELECT session_id, min(timestamp) AS started, count(*) FILTER (WHERE type = 'page') AS page_views,
                   epoch(max(timestamp) - min(timestamp)) AS duration_s
            FROM events WHERE {where} AND session_id IS NOT NULL GROUP BY 1)
        SELECT date_trunc('{bucket}', started) AS bucket, count(*) AS sessions,
               avg(CASE WHEN page_views <= 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate,
               avg(duration_s) AS avg_session_s
        FROM s GROUP BY 1 ORDER BY 1""", params).df()


def entry_exit_pages(con: duckdb.DuckDBPyConnection, r: Range, which: Literal["entry", "exit"] = "entry",
                     limit: int = 10) -> pd.DataFrame:
    """The first (entry) or last (exit) page viewed in each session, most common first."""
    where, params = r.where()
    pick = "arg_min" if which == "entry" else "arg_max"
    return con.execute(f"""
        WITH s AS (
            SELECT {pick}(path, timestamp) AS path FROM events
            WHERE {where} AND type = 'page' AND path IS NOT NULL AND session_id IS NOT NULL
            GROUP BY session_id)
        SELECT path, count(*) AS sessions FROM s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?""",
                       params + [limit]).df().rename(columns={"path": f"{which}_page"})


def breakdown(con: duckdb.DuckDBPyConnection, r: Range, column: str, limit: int = 10) -> pd.DataFrame:
    """Visitors and events by one of :data:`BREAKDOWNS` (``(none)`` for missing values)."""
    if column not in BREAKDOWNS:
        raise ValueError(f"cannot break down by {column!r}; one of {', '.join(BREAKDOWNS)}")
    where, params = r.where()
    return con.execute(f"""
        SELECT coalesce({BREAKDOWNS[column]}, '(none)') AS {column},
               count(DISTINCT {VISITOR}) AS visitors, count(*) AS events
        FROM events WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1 LIMIT ?""", params + [limit]).df()


def campaigns(con: duckdb.DuckDBPyConnection, r: Range, limit: int = 10) -> pd.DataFrame:
    """Sessions that landed with UTM parameters, by source / medium / campaign."""
    where, params = r.where()
    return con.execute(f"""
        SELECT utm_source, utm_medium, utm_campaign, count(DISTINCT session_id) AS sessions,
               count(DISTINCT {VISITOR}) AS visitors
        FROM events WHERE {where} AND utm_campaign IS NOT NULL
        GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3 LIMIT ?""", params + [limit]).df()


def sources(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The sources (write keys' names) that sent events, for the sidebar's filter."""
    return [row[0] for row in con.execute(
        "SELECT DISTINCT source FROM events WHERE source IS NOT NULL ORDER BY 1").fetchall()]


def event_names(con: duckdb.DuckDBPyConnection, r: Range, limit: int = 50) -> list[str]:
    """The most frequent track event names in range."""
    where, params = r.where()
    return [row[0] for row in con.execute(f"""
        SELECT event FROM events WHERE {where} AND type = 'track' AND event IS NOT NULL
        GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?""", params + [limit]).fetchall()]


def page_paths(con: duckdb.DuckDBPyConnection, r: Range, limit: int = 50) -> list[str]:
    """The most viewed page paths in range."""
    where, params = r.where()
    return [row[0] for row in con.execute(f"""
        SELECT path FROM events WHERE {where} AND type = 'page' AND path IS NOT NULL
        GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?""", params + [limit]).fetchall()]


def last_event_time(con: duckdb.DuckDBPyConnection, today: date | None = None) -> datetime | None:
    """Event time of the newest event in the lake: from the partitions since yesterday when they hold
    any (a live lake), else from the whole table."""
    if today is not None:
        recent = con.execute("SELECT max(timestamp) FROM events WHERE dt >= ?::DATE",
                             [today - timedelta(days=1)]).fetchone()[0]
        if recent is not None:
            return recent
    return con.execute("SELECT max(timestamp) FROM events").fetchone()[0]
