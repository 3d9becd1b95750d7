"""Compaction on the real S3 server while queries run: every query sees every row exactly once."""

import threading
from datetime import datetime, timedelta, timezone

import pytest

from query.engine import connect, run_query
from sink.compaction import compact
from sink.destination import LakeDestination
from sink.parquet import encode, plan_objects
from sink.tables import TABLES

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def test_counts_never_change_while_compacting(settings_factory, event_factory):
    settings = settings_factory()
    destination = LakeDestination.from_settings(settings)
    destination.ensure_ready()
    spec = TABLES[0]
    total = 0
    # 2 hours x 3 partitions x 12 flushes of 10 events: 72 small objects.
    for partition in range(3):
        offset = 0
        for flush in range(12):
            records = []
            for i in range(10):
                hour = (flush + i) % 2
                records.append((offset, event_factory(timestamp=T0 + timedelta(hours=hour, minutes=flush))))
                offset += 1
            for obj in plan_objects(spec, partition, records):
                destination.put(obj.key, encode(obj))
            total += len(records)
    before = len(destination.list_keys("events/"))
    assert before == 72

    counts, errors = [], []
    done = threading.Event()

    def query_loop():
        con = connect(settings)
        try:
            while len(counts) < 50 or not done.is_set():
                counts.append(run_query(con, "select count(*), count(distinct event_id) from events",
                                        refresh=settings)[1][0])
        except Exception as exc:  # any failure of a reader is a defect: report it
            errors.append(exc)

    reader = threading.Thread(target=query_loop)
    reader.start()
    report = compact(destination, now=T0 + timedelta(days=1), committed=None, target_bytes=1 << 30,
                     grace=timedelta(minutes=5))
    done.set()
    reader.join(120)
    assert not errors, errors
    assert len(counts) >= 50
    assert set(counts) == {(total, total)}
    assert (report.merged_objects, report.merged_from, report.rows) == (2, 72, total)  # one per hour

    # The merged-away objects stay for the grace period, invisible to readers...
    assert len(destination.list_keys("events/")) == 74
    assert run_query(connect(settings), "select count(*) from events")[1] == [(total,)]
    # ...and go once it has passed.
    later = compact(destination, now=datetime.now(timezone.utc) + timedelta(minutes=10), committed=None,
                    target_bytes=1 << 30, grace=timedelta(minutes=5))
    assert later.deleted == 72 and later.merged_objects == 0
    assert len(destination.list_keys("events/")) == 2
    assert run_query(connect(settings), "select count(*), count(distinct event_id) from events")[1] == [
        (total, total)]
