import io
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq

from clickstream.events import RejectedEvent
from clickstream.metrics import MetricRow
from clickstream.reactions import Reaction
from clickstream.sessions import SessionRecord
from clickstream.topics import Topics
from sink.parquet import encode, plan_objects
from sink.tables import TABLES, by_topic

T0 = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)


def samples(event_factory):
    return {
        "events": event_factory(timestamp=T0, properties={"a": 1}),
        "invalid_events": RejectedEvent(received_at=T0, source="web", reason="no event name", payload='{"x":1}',
                                        endpoint="batch", index=4, request_id="r1"),
        "sessions": SessionRecord(session_id="s1", anonymous_id="a1", source="web", session_start=T0,
                                  session_end=T0 + timedelta(minutes=5), duration_s=300, event_count=4, page_views=3,
                                  entry_path="/", exit_path="/pay", is_bounce=False, experiments={"exp1": "B"},
                                  converted=True, revenue=42.5),
        "metrics": MetricRow(window_start=T0, window_end=T0 + timedelta(minutes=1), window_s=60, source="web",
                             metric="page_views", dimension="path=/", value=17),
        "reactions": Reaction(reaction_id="r", rule="x", kind="threshold", subject="web:/", window_start=T0,
                              window_end=T0, value=5, threshold=5, message="m", created_at=T0),
    }


def test_every_topic_has_a_table():
    assert set(by_topic(Topics.from_prefix("p."))) == {"p.events", "p.invalid", "p.sessions", "p.metrics",
                                                        "p.reactions"}


def test_each_table_round_trips_its_contract(event_factory):
    records = samples(event_factory)
    for spec in TABLES:
        record = records[spec.table]
        [obj] = plan_objects(spec, 1, [(7, spec.decode(record.to_bytes()))])
        assert obj.key == f"{spec.table}/dt=2026-11-27/hour=09/{spec.table}-p1-7-7.parquet"
        table = pq.read_table(io.BytesIO(encode(obj)))
        assert table.schema.equals(spec.schema), spec.table
        assert table.num_rows == 1
    row = pq.read_table(io.BytesIO(encode(plan_objects(TABLES[1], 0, [(0, records["invalid_events"])])[0])))
    assert row.to_pylist()[0]["batch_index"] == 4
    sessions = pq.read_table(io.BytesIO(encode(plan_objects(TABLES[2], 0, [(0, records["sessions"])])[0])))
    assert sessions.to_pylist()[0]["experiments"] == '{"exp1":"B"}'
