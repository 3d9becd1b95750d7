import io
import json
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq

from clickstream.lake import EVENTS_SCHEMA
from sink.buffer import PartitionBuffer
from sink.parquet import encode, plan_objects
from sink.tables import TABLES

EVENTS_SPEC = TABLES[0]

T0 = datetime(2026, 11, 27, 9, 59, tzinfo=timezone.utc)


def test_buffer_is_due_by_age_or_size():
    b = PartitionBuffer(opened_at=100.0)
    assert not b.is_due(1000.0, max_age_s=5, max_bytes=10)  # empty is never due
    b.extend([(7, "x")], 4)
    assert not b.is_due(104.0, max_age_s=5, max_bytes=10)
    assert b.is_due(105.0, max_age_s=5, max_bytes=10)
    b.extend([(8, "y")], 6)
    assert b.is_due(100.0, max_age_s=5, max_bytes=10)
    assert b.last_offset == 8


def test_objects_are_split_by_event_hour_and_named_by_offsets(event_factory):
    records = [
        (10, event_factory(timestamp=T0)),
        (11, event_factory(timestamp=T0 + timedelta(minutes=2))),  # 10:01: next hour
        (12, event_factory(timestamp=T0 + timedelta(seconds=30))),
        (13, event_factory(timestamp=T0 + timedelta(minutes=3))),
    ]
    objects = {o.key: o for o in plan_objects(EVENTS_SPEC, 2, records)}
    assert set(objects) == {
        "events/dt=2026-11-27/hour=09/events-p2-10-12.parquet",
        "events/dt=2026-11-27/hour=10/events-p2-11-13.parquet",
    }
    assert sum(o.num_rows for o in objects.values()) == 4


def test_parquet_is_typed_and_zstd(event_factory):
    event = event_factory(timestamp=T0, properties={"plan": "pro", "n": 2})
    [obj] = plan_objects(EVENTS_SPEC, 0, [(0, event)])
    data = encode(obj)
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.equals(EVENTS_SCHEMA)
    row = table.to_pylist()[0]
    assert row["timestamp"] == T0
    assert row["properties"] == '{"plan":"pro","n":2}'
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_json_columns_read_back_as_sent(event_factory):
    properties = {"title": "Café – ½ price", "tags": ["a", None, 3.5e-7], "nested": {"ok": True, "n": 10**15}}
    event = event_factory(timestamp=T0, properties=properties, context={"locale": "de-DE", "page": {"path": "/ü"}})
    row = EVENTS_SPEC.row(event)
    assert json.loads(row["properties"]) == properties
    assert json.loads(row["context"]) == {"locale": "de-DE", "page": {"path": "/ü"}}
    assert "Café" in row["properties"]  # UTF-8 text, not \u escapes
