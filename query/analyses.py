"""Ready-made clickstream analyses over the lake's views, as functions with typed parameters.

Each returns a pandas DataFrame. Time ranges filter on the Hive partition column ``dt``
as well as on the timestamp, so DuckDB reads only the partitions in range. A visitor is
``coalesce(user_id, anonymous_id)``.

``timestamp`` is a ``TIMESTAMPTZ``, and DuckDB computes ``date_trunc``, ``datediff`` and the
difference of two such values with calendar code, row by row: on millions of events that
was most of a query's time. So per-row expressions use integers instead, with the same
answers: day and hour buckets come from the UTC partition columns ``dt`` and ``hour`` (an
event's folder is the UTC hour of its timestamp, and :func:`query.engine.connect` sets the
session time zone to UTC), and gaps and durations from ``epoch_us(timestamp)``. Buckets
are turned back into timestamps only once per result row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

import duckdb
import pandas as pd

from query.stats import two_proportion_test

VISITOR = "coalesce(user_id, anonymous_id)"
# The key sessions are kept under, by the stream processor too: a device's anonymous id outlives sign-in.
DEVICE = "coalesce(anonymous_id, user_id)"


@dataclass(frozen=True)
class Range:
    """A half-open time range [since, until) in UTC; ``source`` and ``exclude_bots`` narrow the events."""

    since: datetime
    until: datetime
    source: str | None = None
    exclude_bots: bool = False

    @classmethod
    def last(cls, days: float, now: datetime | None = None, **kwargs) -> Range:
        now = now or datetime.now(timezone.utc)
        return cls(now - timedelta(days=days), now, **kwargs)

    def where(self, alias: str = "") -> tuple[str, list]:
        """SQL conditions and parameters selecting this range's events (with partition pruning)."""
        p = f"{alias}." if alias else ""
        clauses = [f"{p}dt BETWEEN ?::DATE AND ?::DATE", f"{p}timestamp >= ?", f"{p}timestamp < ?"]
        params: list = [self.since.date(), self.until.date(), self.since, self.until]
        if self.source is not None:
            clauses.append(f"{p}source = ?")
            params.append(self.source)
        if self.exclude_bots:
            clauses.append(f"NOT coalesce({p}is_bot, false)")
        return " AND ".join(clauses), params


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pd.DataFrame:
    return con.execute(sql, params).df()


def traffic(con, r: Range, bucket: Literal["hour", "day"] = "day") -> pd.DataFrame:
    """Events, page views, visitors and sessions per hour or day."""
    where, params = r.where()
    keys, start = ("dt", "epoch(dt)") if bucket == "day" else ("dt, hour", "epoch(dt) + hour * 3600")
    return _df(con, f"""
        SELECT to_timestamp({start}) AS bucket,
               count(*) AS events,
               count(*) FILTER (WHERE type = 'page') AS page_views,
               count(DISTINCT {VISITOR}) AS visitors,
               count(DISTINCT session_id) AS sessions
        FROM events WHERE {where} GROUP BY {keys} ORDER BY 1""", params)


def top_pages(con, r: Range, limit: int = 10) -> pd.DataFrame:
    where, params = r.where()
    return _df(con, f"""
        SELECT path, count(*) AS page_views, count(DISTINCT {VISITOR}) AS visitors
        FROM events WHERE {where} AND type = 'page' AND path IS NOT NULL
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?""", params + [limit])


def top_referrers(con, r: Range, limit: int = 10) -> pd.DataFrame:
    """Referring hosts of page views, other than the site's own host."""
    where, params = r.where()
    return _df(con, f"""
        SELECT referrer_host, count(*) AS page_views, count(DISTINCT {VISITOR}) AS visitors
        FROM events WHERE {where} AND type = 'page' AND referrer_host IS NOT NULL
              AND referrer_host IS DISTINCT FROM host
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?""", params + [limit])


@dataclass(frozen=True)
class Step:
    """A funnel step: a page path (``page``) or a track event name (``event``)."""

    kind: Literal["page", "event"]
    value: str

    @classmethod
    def parse(cls, text: str) -> Step:
        """``/pricing`` is a page path; anything else is an event name (``event:Name`` forces it)."""
        if text.startswith("event:"):
            return cls("event", text[6:])
        return cls("page", text) if text.startswith("/") else cls("event", text)

    def condition(self) -> tuple[str, list]:
        if self.kind == "page":
            return "type = 'page' AND path = ?", [self.value]
        return "type = 'track' AND event = ?", [self.value]


def funnel(con, r: Range, steps: list[Step], within: Literal["session"] | int = "session") -> pd.DataFrame:
    """How many reach each step in order: within one session, or within ``within`` minutes of step 1.

    A unit (session, or visitor) counts at step k if it did steps 1..k in that order, each the
    first occurrence after the previous step.
    """
    if not steps:
        raise ValueError("a funnel needs at least one step")
    unit = "session_id" if within == "session" else VISITOR
    where, params = r.where()
    # ts in epoch microseconds: the window below is integer arithmetic, not interval arithmetic.
    ctes = [f"base AS (SELECT {unit} AS unit, epoch_us(timestamp) AS ts, type, path, event FROM events "
            f"WHERE {where} AND {unit} IS NOT NULL)"]
    all_params = list(params)
    for i, step in enumerate(steps, start=1):
        condition, step_params = step.condition()
        if i == 1:
            ctes.append(f"s1 AS (SELECT unit, min(ts) AS ts, min(ts) AS start FROM base WHERE {condition} GROUP BY unit)")
        else:
            window = "" if within == "session" else f" AND b.ts <= p.start + {int(within) * 60_000_000}"
            ctes.append(
                f"s{i} AS (SELECT b.unit, min(b.ts) AS ts, any_value(p.start) AS start FROM base b "
                f"JOIN s{i - 1} p ON b.unit = p.unit AND b.ts >= p.ts{window} WHERE {condition} GROUP BY b.unit)"
            )
        all_params += step_params
    counts = " UNION ALL ".join(f"SELECT {i} AS step, count(*) AS units FROM s{i}" for i in range(1, len(steps) + 1))
    result = _df(con, f"WITH {', '.join(ctes)} {counts} ORDER BY step", all_params)
    result.insert(1, "name", [s.value for s in steps])
    first = result["units"].iloc[0]
    result["conversion"] = result["units"] / first if first else 0.0
    previous = result["units"].shift(1).fillna(result["units"].iloc[0])
    result["drop_off"] = (previous - result["units"]).astype(int)
    return result


def paths(con, r: Range, page: str, direction: Literal["next", "previous"] = "next", limit: int = 10) -> pd.DataFrame:
    """The pages viewed right after (or before) ``page`` in the same session, most common first."""
    if direction not in ("next", "previous"):
        raise ValueError(f"direction must be 'next' or 'previous', not {direction!r}")
    return neighbours(con, r, page, limit)[direction]


def neighbours(con, r: Range, page: str, limit: int = 10) -> dict[str, pd.DataFrame]:
    """Both directions of :func:`paths` at once: ``{"previous": ..., "next": ...}``.

    One ordering of the range's page views by session serves both (``lag`` and ``lead`` over the
    same window), so a page that shows both pays for one sort instead of two.

    Page views of one session at the same instant are ordered by path: the counts then do not
    depend on the order DuckDB happens to read them in, and the sort needs no other column
    (ordering ties by ``event_id`` read and sorted one more string column, about a third more time).
    """
    where, params = r.where()
    pairs = con.execute(f"""
        SELECT coalesce(previous, '(exit)') AS previous, coalesce(next, '(exit)') AS next, count(*) AS transitions
        FROM (SELECT path, lag(path) OVER w AS previous, lead(path) OVER w AS next
              FROM events WHERE {where} AND type = 'page' AND session_id IS NOT NULL
              WINDOW w AS (PARTITION BY session_id ORDER BY timestamp, path))
        WHERE path = ? GROUP BY ALL""", params + [page]).df()
    result = {}
    for direction in ("previous", "next"):
        counted = pairs.groupby(direction, as_index=False)["transitions"].sum()
        counted["share"] = counted["transitions"] / counted["transitions"].sum()
        counted = counted.sort_values(["transitions", direction], ascending=[False, True], kind="stable")
        result[direction] = counted.head(limit).rename(columns={direction: f"{direction}_page"}).reset_index(
            drop=True).astype({"transitions": "int64", "share": "float64"})
    return result


def retention(con, r: Range, period: Literal["day", "week"] = "week") -> pd.DataFrame:
    """Cohorts by first active period; for each, visitors active ``offset`` periods later and their share."""
    where, params = r.where()
    # Periods are numbered from the epoch: days since 1970-01-01, or weeks since Monday
    # 1970-01-05 (ISO weeks start on Monday, as date_trunc('week') does), from the UTC day ``dt``.
    epoch, days = ("DATE '1970-01-01'", 1) if period == "day" else ("DATE '1970-01-05'", 7)
    return _df(con, f"""
        WITH activity AS (
            SELECT DISTINCT {VISITOR} AS visitor, floor((dt - {epoch}) / {days})::BIGINT AS period
            FROM events WHERE {where} AND {VISITOR} IS NOT NULL),
        cohorts AS (SELECT visitor, min(period) AS cohort FROM activity GROUP BY visitor),
        sized AS (SELECT cohort, count(*) AS cohort_size FROM cohorts GROUP BY cohort)
        SELECT to_timestamp(epoch({epoch}) + c.cohort * {days * 86400}) AS cohort,
               CAST(a.period - c.cohort AS INTEGER) AS "offset",
               count(*) AS visitors,
               any_value(s.cohort_size) AS cohort_size,
               count(*) / any_value(s.cohort_size) AS share
        FROM activity a JOIN cohorts c USING (visitor) JOIN sized s ON s.cohort = c.cohort
        GROUP BY c.cohort, a.period - c.cohort ORDER BY 1, 2""", params)


def experiment(con, r: Range, experiment_id: str, conversion_event: str = "Order Completed",
               confidence: float = 0.95) -> pd.DataFrame:
    """Per variant: exposed visitors (Segment's ``Experiment Viewed``), those who converted after
    exposure, the rate, and lift against the first variant with a two-proportion z-test."""
    # One scan of the events for both exposures and conversions: the track events of either
    # name in the time range. Conversions are not narrowed by source or bots (a visitor exposed
    # on the web may convert through the backend); exposures are, and only they read the JSON.
    scan, scan_params = Range(r.since, r.until).where()
    where, params = r.where()
    df = _df(con, f"""
        WITH tracked AS MATERIALIZED (
            SELECT {VISITOR} AS visitor, event, timestamp, dt, source, is_bot, properties
            FROM events WHERE {scan} AND type = 'track' AND event IN ('Experiment Viewed', ?)),
        exposures AS (
            SELECT visitor,
                   arg_min(coalesce(properties->>'$.variation_name', properties->>'$.variationName', properties->>'$.variation_id', properties->>'$.variationId'), timestamp)
                       AS variant,
                   min(timestamp) AS exposed_at
            FROM tracked
            WHERE {where} AND event = 'Experiment Viewed'
                  AND coalesce(properties->>'$.experiment_id', properties->>'$.experimentId', properties->>'$.experiment_name', properties->>'$.experimentName') = ?
            GROUP BY 1),
        conversions AS (
            SELECT DISTINCT e.visitor FROM exposures e JOIN tracked c
              ON c.visitor = e.visitor AND c.event = ? AND c.timestamp >= e.exposed_at)
        SELECT variant, count(*) AS exposures, count(c.visitor) AS conversions
        FROM exposures e LEFT JOIN conversions c USING (visitor)
        GROUP BY 1 ORDER BY 1""", scan_params + [conversion_event] + params + [experiment_id, conversion_event])
    df["rate"] = df["conversions"] / df["exposures"]
    rows = []
    if len(df):
        base = df.iloc[0]
        for _, row in df.iterrows():
            test = two_proportion_test(int(base.conversions), int(base.exposures), int(row.conversions),
                                       int(row.exposures), confidence)
            rows.append(test)
    for field in ("lift", "ci_low", "ci_high", "p_value"):
        df[field] = [getattr(t, field) for t in rows]
    df["significant"] = df["p_value"] < (1 - confidence)
    return df


def sessionize(con, r: Range, timeout_minutes: int = 30) -> pd.DataFrame:
    """Sessions rebuilt from events alone, in SQL, as the stream processor builds them: per device
    (anonymous id, else user id), a new session starts after a gap of the timeout or more.

    Sorting every event of the range by device and time (a window) took most of the time on
    millions of events, so the events are first summed up per device and timeout-long slice of
    time (``bucket``), in a hash aggregation: two events of one slice are less than the timeout
    apart, so they always share a session. Only these pieces (about one per session) are then
    ordered: a piece continues the session of the device's piece in the slice right before it
    when the gap between the two is under the timeout, and starts a new session otherwise
    (also when that slice holds no event of the device: the gap is then longer than the
    timeout). Events of a device at the same instant are in the same session whatever order
    they are read in; of page views at the same instant, any may count as the entry (or exit) page.
    """
    if int(timeout_minutes) < 1:
        raise ValueError(f"the session timeout must be at least 1 minute, not {timeout_minutes!r}")
    where, params = r.where()
    timeout = int(timeout_minutes) * 60_000_000  # microseconds: integer arithmetic, not intervals
    frame = con.execute(f"""
        WITH base AS (
            SELECT {DEVICE} AS visitor, epoch_us(timestamp) AS ts, type, path
            FROM events WHERE {where} AND {DEVICE} IS NOT NULL),
        pieces AS (
            -- floor division: DuckDB's // rounds toward zero, which would give the slice around
            -- the epoch twice the width.
            SELECT visitor, ts // {timeout} - (ts % {timeout} < 0)::BIGINT AS bucket,
                   min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events,
                   count(*) FILTER (WHERE type = 'page') AS pages,
                   arg_min(path, ts) FILTER (WHERE type = 'page') AS entry_path,
                   arg_max(path, ts) FILTER (WHERE type = 'page') AS exit_path
            FROM base GROUP BY visitor, bucket),
        marked AS (
            SELECT p.*, CASE WHEN p.first_ts - q.last_ts < {timeout} THEN 0 ELSE 1 END AS starts
            FROM pieces p LEFT JOIN pieces q ON q.visitor = p.visitor AND q.bucket = p.bucket - 1),
        numbered AS (
            SELECT *, sum(starts) OVER (PARTITION BY visitor ORDER BY bucket)::BIGINT AS session_number
            FROM marked)
        SELECT visitor, session_number,
               make_timestamptz(min(first_ts)) AS session_start, make_timestamptz(max(last_ts)) AS session_end,
               (max(last_ts) - min(first_ts)) / 1e6 AS duration_s, sum(events)::BIGINT AS event_count,
               sum(pages)::BIGINT AS page_views,
               arg_min(entry_path, bucket) FILTER (WHERE entry_path IS NOT NULL) AS entry_path,
               arg_max(exit_path, bucket) FILTER (WHERE exit_path IS NOT NULL) AS exit_path
        FROM numbered GROUP BY 1, 2 ORDER BY 1, 2""", params).to_arrow_table()
    # Through Arrow: DuckDB's own DataFrame conversion took about 0.7 s for a million sessions.
    # No column is a DECIMAL (which Arrow would hand to pandas as Python objects), so the
    # frame's types are the ones DuckDB's conversion gives.
    return frame.to_pandas()


ANALYSES = {
    "traffic": traffic,
    "top-pages": top_pages,
    "top-referrers": top_referrers,
    "funnel": funnel,
    "paths": paths,
    "retention": retention,
    "experiment": experiment,
    "sessions": sessionize,
}
