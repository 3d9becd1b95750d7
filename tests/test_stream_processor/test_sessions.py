import json
from datetime import datetime, timedelta, timezone

import pytest

from clickstream.events import Event
from stream_processor.partition import PartitionProcessor, ProcessingConfig
from stream_processor.rules import RuleSet
from stream_processor.sessions import OpenSession, session_end, session_id_for

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)
CONFIG = ProcessingConfig(session_timeout_s=1800, lateness_s=60, window_sizes=(60,))


def ev(n, minutes, anon="a1", user=None, **fields) -> Event:
    t = T0 + timedelta(minutes=minutes)
    values = dict(event_id=f"e{n}", type="page", anonymous_id=anon, user_id=user, timestamp=t, received_at=t,
                  source="web", path="/")
    values.update(fields)
    return Event(**values)


def run(events, config=CONFIG, finish=True):
    proc = PartitionProcessor(0, config, {}, lambda: RuleSet())
    ids, sessions = [], []
    for offset, event in enumerate(events):
        out = proc.process(event, "raw", offset, now=NOW, wall=0)
        ids += [e.session_id for _, e in out.events]
        sessions += out.sessions
    if finish:
        sessions += proc.advance(1e12, now=NOW).sessions
    return ids, sessions


def test_events_within_timeout_share_a_session():
    ids, sessions = run([ev(1, 0, path="/a"), ev(2, 10, path="/b"), ev(3, 39, path="/c")])
    assert len(set(ids)) == 1 and ids[0] == session_id_for("a1", "e1")
    [s] = sessions
    assert (s.event_count, s.page_views, s.entry_path, s.exit_path, s.duration_s) == (3, 3, "/a", "/c", 39 * 60)
    assert not s.is_bounce


def test_gap_of_exactly_the_timeout_starts_a_new_session():
    ids, sessions = run([ev(1, 0), ev(2, 30), ev(3, 59.99)])
    assert ids[0] != ids[1] == ids[2]
    assert [s.event_count for s in sessions] == [1, 2]
    assert sessions[0].is_bounce


def test_a_gap_just_under_the_timeout_keeps_the_session():
    ids, _ = run([ev(1, 0), ev(2, 29.99)])
    assert ids[0] == ids[1]


def test_out_of_order_within_lateness_extends_backwards_and_fixes_entry_path():
    ids, [s] = run([ev(2, 5, path="/second"), ev(1, 4, path="/first", referrer_host="news.example",
                                                     utm_source="mail")])
    assert ids[0] == ids[1]
    assert s.entry_path == "/first" and s.exit_path == "/second"
    assert s.session_start == T0 + timedelta(minutes=4)
    assert (s.referrer_host, s.utm_source) == ("news.example", "mail")  # attribution of the earliest event


def test_a_session_across_midnight_stays_one_session():
    late = datetime(2026, 11, 27, 23, 50, tzinfo=timezone.utc)
    minutes = (late - T0).total_seconds() / 60
    ids, [s] = run([ev(1, minutes), ev(2, minutes + 20), ev(3, minutes + 40)])
    assert len(set(ids)) == 1
    assert s.session_start.day == 27 and s.session_end.day == 28


def test_visitor_switching_from_anonymous_to_identified_keeps_the_session():
    ids, [s] = run([ev(1, 0), ev(2, 1, user="u-42", type="identify", path=None), ev(3, 2, user="u-42")])
    assert len(set(ids)) == 1
    assert (s.anonymous_id, s.user_id, s.event_count) == ("a1", "u-42", 3)


def test_a_repeated_delivery_is_dropped_and_counted_once():
    first = ev(1, 0)
    proc = PartitionProcessor(0, CONFIG, {}, lambda: RuleSet())
    assert len(proc.process(first, "raw", 0, now=NOW, wall=0).events) == 1
    assert proc.process(first, "raw", 1, now=NOW, wall=0).events == []
    assert proc.stats["duplicates_dropped"] == 1


def test_session_closes_only_when_the_watermark_passes_end_plus_timeout():
    proc = PartitionProcessor(0, CONFIG, {}, lambda: RuleSet())
    proc.process(ev(1, 0, anon="a"), "raw", 0, now=NOW, wall=0)
    # Another visitor's event 30 minutes later: watermark = 30 min - 60 s lateness, not yet past.
    out = proc.process(ev(2, 30, anon="b"), "raw", 1, now=NOW, wall=0)
    assert out.sessions == []
    out = proc.process(ev(3, 31, anon="b"), "raw", 2, now=NOW, wall=0)
    assert [s.session_id for s in out.sessions] == [session_id_for("a", "e1")]


def test_conversion_revenue_and_experiments_are_recorded():
    events = [
        ev(1, 0),
        ev(2, 1, type="track", event="Experiment Viewed", path=None,
           properties={"experiment_id": "exp1", "variation_name": "B"}),
        ev(3, 2, type="track", event="Order Completed", path=None, properties={"revenue": 30.5}),
    ]
    _, [s] = run(events)
    assert s.converted and s.revenue == 30.5 and s.experiments == {"exp1": "B"}


@pytest.mark.parametrize("quiet,closed", [(5, False), (61, False), (119, False), (120, True)])
def test_idle_timeout_closes_the_tail_of_a_quiet_stream(quiet, closed):
    config = ProcessingConfig(session_timeout_s=60, lateness_s=60, idle_timeout_s=10, window_sizes=(60,))
    proc = PartitionProcessor(0, config, {}, lambda: RuleSet())
    proc.process(ev(1, 0), "raw", 0, now=NOW, wall=1000.0)
    # After the idle timeout the watermark moves on with the quiet time, still a lateness behind:
    # the session (60 s timeout) closes after 60 + 60 s of quiet.
    out = proc.idle(now=NOW, wall=1000.0 + quiet)
    assert bool(out.sessions) is closed
    assert proc.watermark == T0.timestamp() - 60 + (quiet if quiet >= 10 else 0)


def test_a_visitor_is_forgotten_a_dedup_horizon_after_the_last_event():
    config = ProcessingConfig(session_timeout_s=60, lateness_s=0, window_sizes=(60,), dedup_horizon_s=3600)
    visitors = {}
    proc = PartitionProcessor(0, config, visitors, lambda: RuleSet())
    proc.process(ev(1, 0), "raw", 0, now=NOW, wall=0)
    out = proc.advance(T0.timestamp() + 120, now=NOW)
    assert len(out.sessions) == 1 and "a1" in visitors  # closed, still remembered for dedup
    out = proc.advance(T0.timestamp() + 3600, now=NOW)
    assert "a1" not in visitors and "a1" in out.dirty


def test_a_worker_restored_with_nothing_new_to_read_still_closes_the_tail():
    config = ProcessingConfig(session_timeout_s=60, lateness_s=60, idle_timeout_s=10, window_sizes=(60,))
    visitors = {}
    before = PartitionProcessor(0, config, visitors, lambda: RuleSet())
    before.process(ev(1, 0), "raw", 0, now=NOW, wall=1000.0)
    after = PartitionProcessor(0, config, visitors, lambda: RuleSet())
    after.restore(before.checkpoint())
    # No event follows the restart: the quiet is counted from the worker's first look.
    assert not after.idle(now=NOW, wall=5000.0).sessions
    assert not after.idle(now=NOW, wall=5119.0).sessions
    [closed] = after.idle(now=NOW, wall=5120.0).sessions
    assert closed.session_id == session_id_for("a1", "e1")


def test_a_session_is_kept_as_a_tuple_and_read_back_from_any_form():
    session = OpenSession(session_id="s1", source="web", anonymous_id="a1", user_id=None, start=10.0, end=70.0,
                          event_count=3, entry_path="/", experiments={"exp": "b"}, event_names=["Signup"])
    state = session.to_state()
    assert isinstance(state, tuple) and session_end(state) == 70.0
    assert OpenSession.from_state(state) == session
    assert OpenSession.from_state(json.loads(json.dumps(state))) == session  # as a checkpoint holds it
    bare = OpenSession(session_id="s2", source="web", anonymous_id="a2", user_id=None, start=1.0, end=1.0)
    # Nothing is kept after the last value that is not a default (no counts, paths, experiments...).
    assert bare.to_state() == ("s2", "web", "a2", None, 1.0, 1.0)
    converted = OpenSession(session_id="s3", source="web", anonymous_id="a3", user_id=None, start=1.0, end=1.0,
                            converted=True)
    assert converted.to_state()[-1] is True and OpenSession.from_state(list(converted.to_state())) == converted
    restored = OpenSession.from_state(bare.to_state())
    assert restored == bare and restored.experiments == {} and restored.fired == []
    restored.fired.append("r")  # containers of their own, not shared defaults
    assert OpenSession.from_state(bare.to_state()).fired == []
    earlier = dict(vars(session))  # what checkpoints written before held
    assert OpenSession.from_state(earlier) == session and session_end(earlier) == 70.0
