"""The vectorised decoding of a flush gives the rows the per-record path gives, and hands a batch
it does not take to the per-record path, which names the bad records and keeps the others."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.events import Event
from clickstream.lake import EVENTS_SCHEMA, epoch_hour, partition_prefix
from sink.columnar import JsonBatchDecoder, NotColumnar
from sink.parquet import decode_records, from_models, plan
from sink.tables import TABLES

EVENTS = TABLES[0]
JSON_COLUMNS = ("properties", "traits", "context")
T0 = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)


def _comparable(table):
    """Rows with the JSON columns parsed: the vectorised path may spell a number differently."""
    rows = table.to_pylist()
    for row in rows:
        for name in JSON_COLUMNS:
            row[name] = json.loads(row[name])
    return rows


def test_a_flush_decodes_to_the_rows_of_the_per_record_path(event_factory):
    events = [
        event_factory(timestamp=T0 + timedelta(minutes=i * 17, microseconds=i), type=kind,
                      user_id=f"u{i}" if i % 3 else None, is_bot=i % 5 == 0, url=f"https://x.test/p{i}?q=1",
                      properties={"title": "Café – ½ price", "n": i, "tags": ["a", None, 3.5e-7],
                                  "nested": {"ok": True, "big": 10**20}},
                      traits={"email": "a@b.test"} if kind == "identify" else {},
                      context={"locale": "de-DE", "page": {"path": "/ü"}, "ua": 'quote " and \\ slash'})
        for i, kind in enumerate(["page", "track", "identify", "screen", "group", "alias"] * 3)
    ]
    records = [(100 + i, e.to_bytes()) for i, e in enumerate(events)]
    fast = decode_records(EVENTS, records)
    reference = from_models(EVENTS, [(100 + i, e) for i, e in enumerate(events)])
    assert fast.vectorised
    assert fast.table.schema.equals(EVENTS_SCHEMA)
    assert _comparable(fast.table) == _comparable(reference.table)
    assert fast.table.column("properties").to_pylist() == reference.table.column("properties").to_pylist()
    assert (fast.offsets, fast.hours, fast.ids) == (reference.offsets, reference.hours, reference.ids)
    assert fast.undecodable == []
    # and the same objects, cut by hour and named by offsets
    assert [(o.key, o.table.num_rows) for o in plan(EVENTS, 3, fast)] == \
        [(o.key, o.table.num_rows) for o in plan(EVENTS, 3, reference)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(properties=st.dictionaries(st.text(max_size=6), json_values, max_size=4), title=st.none() | st.text(max_size=20),
       micros=st.integers(0, 3 * 3600 * 10**6))
def test_any_json_properties_and_times_read_back_alike(properties, title, micros):
    t = T0 + timedelta(microseconds=micros)
    event = Event(event_id="e1", type="track", event="Clicked", anonymous_id="a", timestamp=t, received_at=t,
                  source="web", title=title, properties=properties)
    fast = decode_records(EVENTS, [(0, event.to_bytes())])
    reference = from_models(EVENTS, [(0, event)])
    assert fast.vectorised
    assert _comparable(fast.table) == _comparable(reference.table)
    assert fast.hours == reference.hours


def test_a_bad_record_sends_its_flush_to_the_per_record_path_and_only_it_is_left_out(event_factory):
    good = [event_factory(timestamp=T0) for _ in range(3)]
    records = [(0, good[0].to_bytes()), (1, b'{"event_id": "x", "type": "click"}'), (2, good[1].to_bytes()),
               (3, b"not json"), (4, good[2].to_bytes())]
    decoded = decode_records(EVENTS, records)
    assert not decoded.vectorised
    assert decoded.offsets == [0, 2, 4]
    assert decoded.ids == [e.event_id for e in good]
    assert [offset for offset, _ in decoded.undecodable] == [1, 3]
    assert decoded.table.num_rows == 3


@pytest.mark.parametrize(("change", "why"), [
    ({"type": "click"}, "type is not one of"),
    ({"event_id": None}, "event_id is missing"),
    ({"properties": [1, 2]}, "properties is not an object"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"is_bot": "maybe"}, "maybe"),
])
def test_the_vectorised_decoder_refuses_what_the_event_model_refuses(event_factory, change, why):
    record = json.loads(event_factory(timestamp=T0).to_bytes())
    record.update(change)
    with pytest.raises(NotColumnar, match=why):
        EVENTS.columnar().decode([json.dumps(record).encode()])


def test_invalid_utf8_is_refused():
    with pytest.raises(NotColumnar, match="UTF-8"):
        EVENTS.columnar().decode([b'{"event_id": "\xff"}'])


def test_defaults_fill_an_explicit_null_and_offsets_are_honoured():
    decoder = JsonBatchDecoder(EVENTS_SCHEMA, json_columns=JSON_COLUMNS, defaults={"is_bot": "false",
                                                                                     "properties": "'{}'"})
    record = {name: None for name in EVENTS_SCHEMA.names}
    record.update(event_id="e", type="page", timestamp="2026-01-01T00:00:00", received_at="2026-01-01T01:00:00+01:00",
                  source="s")
    [row] = decoder.decode([json.dumps(record).encode()]).to_pylist()
    assert row["is_bot"] is False and row["properties"] == "{}"
    assert row["timestamp"] == row["received_at"] == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_epoch_hour_is_exact_at_the_last_microsecond_of_an_hour():
    t = datetime(2026, 11, 27, 9, 59, 59, 999999, tzinfo=timezone.utc)
    assert epoch_hour(t) == epoch_hour(t.replace(minute=0, second=0, microsecond=0))
    assert epoch_hour(t + timedelta(microseconds=1)) == epoch_hour(t) + 1
    assert partition_prefix("events", t) == "events/dt=2026-11-27/hour=09"
    assert epoch_hour(datetime(2026, 11, 27, 9)) == epoch_hour(t)  # naive times are UTC
