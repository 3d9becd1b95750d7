"""Lake layout: table names, Parquet schemas and object keys.

Objects are partitioned by event time, Hive style, so Athena, Trino, Spark and
DuckDB read them as partitioned tables::

    {root}/{table}/dt=YYYY-MM-DD/hour=HH/{table}-p{partition}-{first_offset}-{last_offset}.parquet

The key follows from the Kafka partition and the offsets of the rows it holds, so
a retried upload of the same rows rewrites the same object instead of adding one.
An object written by compaction holds the rows of several partitions of one hour and
names one offset range per partition, in partition order::

    {table}-p0-{first}-{last}-p1-{first}-{last}-....parquet
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone

import pyarrow as pa

EVENTS = "events"
INVALID_EVENTS = "invalid_events"
SESSIONS = "sessions"
METRICS = "metrics"
REACTIONS = "reactions"

UTC_TS = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("group_id", pa.string()),
        ("previous_id", pa.string()),
        ("timestamp", UTC_TS),
        ("received_at", UTC_TS),
        ("source", pa.string()),
        ("url", pa.string()),
        ("host", pa.string()),
        ("path", pa.string()),
        ("query", pa.string()),
        ("referrer", pa.string()),
        ("referrer_host", pa.string()),
        ("title", pa.string()),
        ("browser", pa.string()),
        ("os", pa.string()),
        ("device_type", pa.string()),
        ("is_bot", pa.bool_()),
        ("ip", pa.string()),
        ("utm_source", pa.string()),
        ("utm_medium", pa.string()),
        ("utm_campaign", pa.string()),
        # JSON text: query with DuckDB's json functions, e.g. properties->>'$.plan'
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("context", pa.string()),
    ]
)

INVALID_EVENTS_SCHEMA = pa.schema(
    [
        ("received_at", UTC_TS),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("payload", pa.string()),  # the call as sent (JSON text, cut at 32 KB)
        ("endpoint", pa.string()),
        ("batch_index", pa.int32()),
        ("request_id", pa.string()),
    ]
)

SESSIONS_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("source", pa.string()),
        ("session_start", UTC_TS),
        ("session_end", UTC_TS),
        ("duration_s", pa.float64()),
        ("event_count", pa.int64()),
        ("page_views", pa.int64()),
        ("entry_path", pa.string()),
        ("exit_path", pa.string()),
        ("is_bounce", pa.bool_()),
        ("referrer_host", pa.string()),
        ("utm_source", pa.string()),
        ("utm_medium", pa.string()),
        ("utm_campaign", pa.string()),
        ("device_type", pa.string()),
        ("experiments", pa.string()),  # JSON object: experiment id -> variation
        ("converted", pa.bool_()),
        ("revenue", pa.float64()),
    ]
)

METRICS_SCHEMA = pa.schema(
    [
        ("window_start", UTC_TS),
        ("window_end", UTC_TS),
        ("window_s", pa.int32()),
        ("source", pa.string()),
        ("metric", pa.string()),
        ("dimension", pa.string()),
        ("value", pa.float64()),
    ]
)

REACTIONS_SCHEMA = pa.schema(
    [
        ("reaction_id", pa.string()),
        ("rule", pa.string()),
        ("kind", pa.string()),
        ("subject", pa.string()),
        ("window_start", UTC_TS),
        ("window_end", UTC_TS),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("message", pa.string()),
        ("created_at", UTC_TS),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    EVENTS: EVENTS_SCHEMA,
    INVALID_EVENTS: INVALID_EVENTS_SCHEMA,
    SESSIONS: SESSIONS_SCHEMA,
    METRICS: METRICS_SCHEMA,
    REACTIONS: REACTIONS_SCHEMA,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_HOUR = timedelta(hours=1)
HOUR_US = 3_600_000_000  # microseconds in an hour, for timestamps held as integers (Arrow, Parquet)


def epoch_hour(event_time: datetime) -> int:
    """Hours since 1970-01-01 UTC of the hour ``event_time`` falls in (naive times are UTC).

    Exact integer arithmetic, so it agrees with ``µs // HOUR_US`` on the same instant in an Arrow
    column: a float of seconds can round the last microsecond before an hour into the next.
    """
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=timezone.utc)
    return (event_time - _EPOCH) // _HOUR


def partition_prefix(table: str, event_time: datetime) -> str:
    """The Hive partition folder an event-time belongs to, e.g. ``events/dt=2026-11-27/hour=09``."""
    # Per record in the sink: formatting the date costs more than finding the hour it falls in.
    return hour_prefix(table, epoch_hour(event_time))


@functools.lru_cache(maxsize=4096)
def hour_prefix(table: str, epoch_hour: int) -> str:
    """The Hive partition folder of an hour given as :func:`epoch_hour`."""
    t = datetime.fromtimestamp(epoch_hour * 3600, timezone.utc)
    return f"{table}/dt={t:%Y-%m-%d}/hour={t:%H}"


def object_key(table: str, event_time: datetime, partition: int, first_offset: int, last_offset: int) -> str:
    return hour_object_key(table, epoch_hour(event_time), partition, first_offset, last_offset)


def hour_object_key(table: str, epoch_hour: int, partition: int, first_offset: int, last_offset: int) -> str:
    return f"{hour_prefix(table, epoch_hour)}/{table}-p{partition}-{first_offset}-{last_offset}.parquet"


def table_glob(root: str, table: str) -> str:
    """Every Parquet object of a table under a lake root (``s3://bucket`` or ``file:///dir``)."""
    return f"{root.rstrip('/')}/{table}/*/*/*.parquet"


# The name of a lake object: its table, then one ``p{partition}-{first}-{last}`` per Kafka
# partition it holds. RE2 syntax as well, so that ``query.engine`` parses keys with the same pattern.
OBJECT_NAME_PATTERN = r"([a-z_]+)-(p[0-9]+-[0-9]+-[0-9]+(?:-p[0-9]+-[0-9]+-[0-9]+)*)[.]parquet"
RANGE_PATTERN = r"p([0-9]+)-([0-9]+)-([0-9]+)"
_OBJECT_NAME = re.compile(OBJECT_NAME_PATTERN)
_RANGE = re.compile(RANGE_PATTERN)

OffsetRange = tuple[int, int, int]  # (partition, first offset, last offset)


def ranges_object_key(hour_prefix: str, table: str, ranges: list[OffsetRange]) -> str:
    """The key of an object of ``hour_prefix`` holding each (partition, first, last) range given."""
    spans = "-".join(f"p{p}-{first}-{last}" for p, first, last in sorted(ranges))
    return f"{hour_prefix}/{table}-{spans}.parquet"


def parse_object_key(key: str) -> tuple[str, tuple[OffsetRange, ...]] | None:
    """``.../{table}-p{partition}-{first}-{last}[-p...].parquet`` -> (table, ranges); else None.

    Ranges come in partition order; a name giving a partition twice is not a lake object's.
    """
    match = _OBJECT_NAME.fullmatch(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    ranges = tuple((int(p), int(first), int(last)) for p, first, last in _RANGE.findall(match[2]))
    partitions = [r[0] for r in ranges]
    if partitions != sorted(set(partitions)):
        return None
    return match[1], ranges
