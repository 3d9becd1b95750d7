"""What a restarted worker finds it sent before, and does not send again."""

from datetime import datetime, timezone

from clickstream.metrics import MetricRow
from stream_processor import emitted as em
from stream_processor.state_store import encode


def _row(value, metric="page_views"):
    return MetricRow(window_start=datetime(2026, 3, 1, 12, tzinfo=timezone.utc),
                     window_end=datetime(2026, 3, 1, 12, 1, tzinfo=timezone.utc), window_s=60,
                     source="web", metric=metric, value=value)


def test_checkpoint_keeps_state_and_offsets_and_reads_older_ones():
    record = em.wrap_checkpoint(encode({"offsets": {"raw": 7}}), encode({"events": 12}))
    from pydantic_core import from_json

    assert em.split_checkpoint(from_json(record)) == ({"offsets": {"raw": 7}}, {"events": 12})
    # Written before the offsets were kept: the state as it is, and no offsets to look from.
    assert em.split_checkpoint({"offsets": {"raw": 7}}) == ({"offsets": {"raw": 7}}, None)
    assert em.split_checkpoint(None) == (None, None)


def test_outputs_found_in_the_topics_are_dropped_once():
    found = em.Resent()
    assert not found
    found.add(em.EVENTS, [{"event_id": "a"}, {"event_id": "b"}])
    # Metric rows read back (JSON) match the rows the merger produces again.
    found.add(em.METRICS, [{"window_start": "2026-03-01T12:00:00Z", "window_end": "2026-03-01T12:01:00Z",
                            "window_s": 60, "source": "web", "metric": "page_views", "dimension": "", "value": 3}])
    assert found
    events = [("k", type("E", (), {"event_id": i})()) for i in ("a", "c", "b")]
    kept = found.drop(em.EVENTS, events, lambda item: item[1].event_id)
    assert [e.event_id for _, e in kept] == ["c"]
    # Each is produced again once at most: a second "a" is not the resent one.
    assert len(found.drop(em.EVENTS, events, lambda item: item[1].event_id)) == 3
    rows = found.drop(em.METRICS, [_row(3), _row(1, "events")], MetricRow.row_id)
    assert [r.metric for r in rows] == ["events"] and not found and found.dropped == 3


def test_outputs_of_a_partition_stay_in_one_partition():
    assert [em.output_partition(p, 4) for p in range(4)] == [0, 1, 2, 3]
    assert [em.output_partition(p, 2) for p in range(4)] == [0, 1, 0, 1]
