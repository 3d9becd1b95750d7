import json

from clickstream.events import Event
from stream_processor import visitor_state as vs
from stream_processor.partition import PartitionProcessor, ProcessingConfig
from stream_processor.rules import RuleSet
from test_stream_processor.test_sessions import CONFIG, NOW, T0, ev


def test_one_id_is_kept_flat_and_the_second_makes_a_dict():
    state = vs.new(3)
    assert vs.seen_entry(state, "e1") is None and vs.latest_seen(state) is None
    vs.remember(state, "e1", 100.0, 7, "s1", 3600)
    assert state == [3, ["e1", 100.0, 7, "s1"], None]
    assert vs.seen_entry(state, "e1") == [100.0, 7, "s1"] and vs.seen_entry(state, "e2") is None
    vs.remember(state, "e2", 90.0, 8, "s1", 3600)
    assert state[vs.SEEN] == {"e1": [100.0, 7, "s1"], "e2": [90.0, 8, "s1"]}
    assert vs.latest_seen(state) == 100.0 and vs.seen_entry(state, "e2") == [90.0, 8, "s1"]


def test_past_64_ids_those_a_horizon_behind_the_newest_are_forgotten():
    state = vs.new(0)
    for i in range(65):
        vs.remember(state, f"old{i}", float(i), i, "s1", 3600)
    assert len(state[vs.SEEN]) == 65  # up to 64 kept before, nothing is pruned
    vs.remember(state, "new", 3620.0, 65, "s2", 3600)
    # The 66th id finds 65 kept: those older than 3620 - 3600 go.
    assert set(state[vs.SEEN]) == {f"old{i}" for i in range(20, 65)} | {"new"}
    assert vs.seen_entry(state, "old3") is None and vs.seen_entry(state, "new") == [3620.0, 65, "s2"]


def test_a_state_written_by_an_earlier_version_is_read():
    earlier = {"p": 1, "session": None,
               "seen": {"e1": [100.0, "t.raw:7", "s1"], "e2": [110.0, "t.raw:9", "s1"]}}
    state = vs.from_stored(earlier)
    assert state == [1, {"e1": [100.0, 7, "s1"], "e2": [110.0, 9, "s1"]}, None]
    one = vs.from_stored({"p": 0, "session": None, "seen": {"e1": [100.0, "raw:12", "s1"]}})
    assert one == [0, ["e1", 100.0, 12, "s1"], None]
    assert vs.from_stored(one) is one


def restarted(visitors) -> PartitionProcessor:
    """A processor restored from states as the state topic gives them back (JSON)."""
    return PartitionProcessor(0, CONFIG, {k: json.loads(json.dumps(v)) for k, v in visitors.items()},
                              lambda: RuleSet())


def test_after_a_restart_a_record_read_again_is_sent_again_and_a_repeat_is_dropped():
    first = PartitionProcessor(0, CONFIG, {}, lambda: RuleSet())
    [(_, sent)] = first.process(ev(1, 0), "raw", 4, now=NOW, wall=0).events
    first.process(ev(2, 1), "raw", 5, now=NOW, wall=0)
    for visitors in (first.visitors, {"a1": {"p": 0, "session": first.visitors["a1"][vs.SESSION],
                                             "seen": {"e1": [T0.timestamp(), "raw:4", sent.session_id],
                                                      "e2": [T0.timestamp() + 60, "raw:5", sent.session_id]}}}):
        proc = restarted(visitors)
        # The same record (offset 4) read again after a crash: forwarded again, with its session.
        [(_, again)] = proc.process(ev(1, 0), "raw", 4, now=NOW, wall=0).events
        assert again.session_id == sent.session_id and proc.stats["replayed_after_checkpoint"] == 1
        # The same event id at another offset: an SDK's repeat, dropped.
        assert proc.process(ev(1, 0), "raw", 6, now=NOW, wall=0).events == []
        assert proc.stats["duplicates_dropped"] == 1


def test_restored_states_close_their_sessions_and_are_forgotten():
    config = ProcessingConfig(session_timeout_s=60, lateness_s=0, window_sizes=(60,), dedup_horizon_s=3600)
    first = PartitionProcessor(0, config, {}, lambda: RuleSet())
    first.process(ev(1, 0), "raw", 0, now=NOW, wall=0)
    first.process(Event(**{**ev(2, 0).model_dump(), "anonymous_id": "a2"}), "raw", 1, now=NOW, wall=0)
    proc = PartitionProcessor(0, config, json.loads(json.dumps(first.visitors)), lambda: RuleSet())
    assert len(proc.advance(T0.timestamp() + 120, now=NOW).sessions) == 2
    assert set(proc.visitors) == {"a1", "a2"}
    proc.advance(T0.timestamp() + 3600, now=NOW)
    assert proc.visitors == {}
