from datetime import datetime, timedelta, timezone

import pytest

from clickstream.lake import object_key, parse_object_key, partition_prefix, ranges_object_key, table_glob


def test_partition_prefix_is_utc_hour():
    t = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 22:30 UTC the day before
    assert partition_prefix("events", t) == "events/dt=2026-02-28/hour=22"


def test_object_key_layout():
    t = datetime(2026, 11, 27, 9, 5, tzinfo=timezone.utc)
    assert object_key("events", t, 3, 100, 250) == "events/dt=2026-11-27/hour=09/events-p3-100-250.parquet"


@pytest.mark.parametrize(
    "key,expected",
    [
        ("events/dt=2026-11-27/hour=09/events-p3-100-250.parquet", ("events", ((3, 100, 250),))),
        ("invalid_events/dt=2026-11-27/hour=09/invalid_events-p0-0-0.parquet", ("invalid_events", ((0, 0, 0),))),
        ("events/dt=2026-11-27/hour=09/events-p0-5-9-p2-0-40-p10-7-7.parquet",
         ("events", ((0, 5, 9), (2, 0, 40), (10, 7, 7)))),
        ("events/dt=2026-11-27/hour=09/compacted.parquet", None),
        ("events/dt=2026-11-27/hour=09/events-p3-100-250.parquet.tmp", None),
        ("events/dt=2026-11-27/hour=09/events-x3-100-250.parquet", None),
        ("events/dt=2026-11-27/hour=09/events-p3-100.parquet", None),
        ("events/dt=2026-11-27/hour=09/events-p3-100-250-p4.parquet", None),
        ("events/dt=2026-11-27/hour=09/events-p3-100-250-p3-300-400.parquet", None),  # a partition twice
        ("events/dt=2026-11-27/hour=09/events-p3-100-250-p1-0-4.parquet", None),  # out of order
    ],
)
def test_parse_object_key(key, expected):
    assert parse_object_key(key) == expected


def test_ranges_object_key_names_partitions_in_order_and_parses_back():
    key = ranges_object_key("events/dt=2026-11-27/hour=09", "events", [(2, 0, 40), (0, 5, 9)])
    assert key == "events/dt=2026-11-27/hour=09/events-p0-5-9-p2-0-40.parquet"
    assert parse_object_key(key) == ("events", ((0, 5, 9), (2, 0, 40)))


def test_table_glob():
    assert table_glob("s3://b/", "events") == "s3://b/events/*/*/*.parquet"
