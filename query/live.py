"""The live view: the last minutes of the stream processor's windowed metrics (``metrics`` table).

The processor closes 10-second and 1-minute windows (``clickstream/metrics.py``); these functions
read them back for a span ending at ``now`` (passed in, so tests need no clock). Rows of several
sources in one window are added up, except ``unique_visitors``, whose per-source counts cannot be
merged exactly and are summed as an upper bound.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from clickstream import metrics as m


def _where(now: datetime, minutes: int, source: str | None, alias: str = "") -> tuple[str, list]:
    """Windows that started in [now - minutes, now), with partition pruning on ``dt``."""
    p = f"{alias}." if alias else ""
    since = now - timedelta(minutes=minutes)
    clauses = [f"{p}dt BETWEEN ?::DATE AND ?::DATE", f"{p}window_start >= ?", f"{p}window_start < ?"]
    params: list = [since.date(), now.date(), since, now]
    if source is not None:
        clauses.append(f"{p}source = ?")
        params.append(source)
    return " AND ".join(clauses), params


def series(con: duckdb.DuckDBPyConnection, now: datetime, minutes: int = 30, source: str | None = None) -> pd.DataFrame:
    """One row per window of the span: events per second (10 s windows) and visitors (1-minute windows).

    Columns: ``window_start``, ``window_s``, ``events_per_s``, ``unique_visitors``, ``page_views``.
    """
    where, params = _where(now, minutes, source)
    return con.execute(f"""
        SELECT window_start, window_s,
               sum(value) FILTER (WHERE metric = ? AND dimension = '') / any_value(window_s) AS events_per_s,
               sum(value) FILTER (WHERE metric = ?) AS unique_visitors,
               sum(value) FILTER (WHERE metric = ? AND dimension = '') AS page_views
        FROM metrics WHERE {where} AND window_s IN (10, 60) AND metric IN (?, ?, ?)
        GROUP BY 1, 2 ORDER BY 2, 1""",
                       [m.EVENTS, m.UNIQUE_VISITORS, m.PAGE_VIEWS] + params
                       + [m.EVENTS, m.UNIQUE_VISITORS, m.PAGE_VIEWS]).df()


def now_figures(con: duckdb.DuckDBPyConnection, now: datetime, minutes: int = 30,
                source: str | None = None) -> dict:
    """Headline numbers: events/s of the newest 10 s window, visitors and active sessions of the newest
    1-minute window, and when that window started (None when the span holds no metrics)."""
    where, params = _where(now, minutes, source)
    where_m, _ = _where(now, minutes, source, alias="m")
    rows = con.execute(f"""
        WITH newest AS (SELECT window_s, max(window_start) AS window_start FROM metrics
                        WHERE {where} AND window_s IN (10, 60) GROUP BY 1)
        SELECT m.window_s, m.metric, any_value(m.window_start), sum(m.value)
        FROM metrics m JOIN newest n ON m.window_s = n.window_s AND m.window_start = n.window_start
        WHERE {where_m} AND m.dimension = ''
              AND m.metric IN (?, ?, ?)
        GROUP BY 1, 2""", params + params + [m.EVENTS, m.UNIQUE_VISITORS, m.ACTIVE_SESSIONS]).fetchall()
    by = {(w, metric): (start, value) for w, metric, start, value in rows}
    events = by.get((10, m.EVENTS))
    visitors = by.get((60, m.UNIQUE_VISITORS))
    sessions = by.get((60, m.ACTIVE_SESSIONS))
    return {
        "events_per_s": events[1] / 10 if events else None,
        "events_window": events[0] if events else None,
        "active_visitors": visitors[1] if visitors else None,
        "active_sessions": sessions[1] if sessions else None,
        "visitors_window": visitors[0] if visitors else None,
    }


def top_pages_now(con: duckdb.DuckDBPyConnection, now: datetime, minutes: int = 5, source: str | None = None,
                  limit: int = 10) -> pd.DataFrame:
    """Page views by path over the 1-minute windows of the last ``minutes``."""
    where, params = _where(now, minutes, source)
    return con.execute(f"""
        SELECT substr(dimension, 6) AS path, sum(value)::BIGINT AS page_views
        FROM metrics WHERE {where} AND window_s = 60 AND metric = ? AND starts_with(dimension, 'path=')
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?""", params + [m.PAGE_VIEWS, limit]).df()


def latest_reactions(con: duckdb.DuckDBPyConnection, now: datetime, minutes: int = 30,
                     limit: int = 10) -> pd.DataFrame:
    """The newest fired rules of the span, newest first."""
    since = now - timedelta(minutes=minutes)
    return con.execute("""
        SELECT created_at, rule, subject, value, threshold, message FROM reactions
        WHERE dt BETWEEN ?::DATE AND ?::DATE AND created_at >= ? AND created_at <= ?
        ORDER BY created_at DESC LIMIT ?""", [since.date(), now.date(), since, now, limit]).df()
