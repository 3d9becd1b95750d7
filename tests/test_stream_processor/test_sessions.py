import copy
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from clickstream import metrics as m
from clickstream.events import Event
from stream_processor.partition import Output, PartitionProcessor, ProcessingConfig
from stream_processor.rules import RuleSet
from stream_processor.sessions import OpenSession, session_end, session_id_for
from stream_processor.windows import counter_key

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


def test_an_event_in_the_gap_arriving_after_the_next_one_bridges_the_two():
    # e3 comes a timeout after e1, before the watermark closed e1's session; e2, in the gap and
    # within the lateness, arrives last and joins all three (before, e3 started a session of its own).
    ids, [s] = run([ev(1, 0, path="/a"), ev(3, 30.5, path="/c"), ev(2, 29.7, path="/b")])
    assert len(ids) == 3 and set(ids) == {session_id_for("a1", "e1")}
    assert (s.event_count, s.entry_path, s.exit_path, s.duration_s) == (3, "/a", "/c", 30.5 * 60)


def test_a_held_event_starts_the_next_session_when_the_open_one_closes():
    proc = PartitionProcessor(0, CONFIG, {}, lambda: RuleSet())
    proc.process(ev(1, 0), "raw", 0, now=NOW, wall=0)
    out = proc.process(ev(2, 30.5), "raw", 1, now=NOW, wall=0)
    assert out.events == [] and out.sessions == [] and proc.stats["events_held"] == 1
    assert proc.process(ev(3, 30.6, anon="other"), "raw", 2, now=NOW, wall=0).sessions == []
    # The watermark passes e1 + timeout: e1's session closes, and e2 starts the next one.
    out = proc.process(ev(4, 31.1, anon="other"), "raw", 3, now=NOW, wall=0)
    assert [s.session_id for s in out.sessions] == [session_id_for("a1", "e1")]
    assert [(e.event_id, e.session_id) for _, e in out.events] == [("e2", session_id_for("a1", "e2")),
                                                                   ("e4", session_id_for("other", "e3"))]
    assert proc.held == {}
    # A repeated delivery of a held event is a duplicate like any other.
    assert proc.process(ev(2, 30.5), "raw", 4, now=NOW, wall=0).events == []


def _in_order_and_shuffled(seed, config):
    """A stream of a few visitors with gaps around the timeout, and the same stream delivered out of
    order, each event at most the lateness behind the newest before it (so none is late)."""
    rng = random.Random(seed)
    timeout, lateness = config.session_timeout_s, config.lateness_s
    events, n = [], 0
    for visitor in "abcdef":
        t = rng.uniform(0, 300)
        for _ in range(rng.randrange(5, 40)):
            # Short steps and gaps near the timeout: reordered, they make the cases that need holding.
            t += rng.choice([rng.uniform(0, lateness), rng.uniform(timeout - lateness, timeout),
                             rng.uniform(timeout, timeout + lateness), timeout, rng.uniform(timeout, 3 * timeout)])
            events.append(ev(n, t / 60, anon=visitor, path=f"/{rng.randrange(4)}"))
            n += 1
    events.sort(key=lambda e: e.timestamp)
    arrival = sorted(events, key=lambda e: e.timestamp.timestamp() + rng.uniform(0, lateness * 0.999))
    return events, arrival


def _sessions_by_events(events, config):
    """Each session as (its events' ids, what its record says apart from its id), and the forwarded
    ids' session ids; the window counts of events and page views."""
    proc = PartitionProcessor(0, config, {}, lambda: RuleSet())
    forwarded, sessions, partials = {}, [], []
    for offset, event in enumerate(events):
        out = proc.process(event, "raw", offset, now=NOW, wall=0)
        forwarded.update({e.event_id: e.session_id for _, e in out.events})
        sessions += out.sessions
        partials += out.partials
    out = proc.advance(1e12, now=NOW)
    forwarded.update({e.event_id: e.session_id for _, e in out.events})
    sessions += out.sessions
    partials += out.partials
    members = {}
    for event_id, session_id in forwarded.items():
        members.setdefault(session_id, set()).add(event_id)
    described = sorted((tuple(sorted(members[s.session_id])),
                        s.model_dump_json(exclude={"session_id"})) for s in sessions)
    # Which event opened a session, and so which window counts it as started, depends on arrival.
    some_page = counter_key(m.PAGE_VIEWS, m.dimension(path="/1"))
    windows = sorted((p["s"], p["counts"].get(counter_key(m.EVENTS)), p["counts"].get(some_page))
                     for p in partials if p["kind"] == "window")
    return described, windows, len(forwarded), proc


@pytest.mark.parametrize("timeout,lateness", [(120, 30), (30, 60)])
@pytest.mark.parametrize("seed", range(40))
def test_sessions_do_not_depend_on_the_order_events_arrive_in_within_the_lateness(seed, timeout, lateness):
    """With a lateness longer than the timeout, events a timeout or more before the open session
    need not be late either: they are held until nothing can join them, or they join others held,
    or a bridge joins them to the session."""
    config = ProcessingConfig(session_timeout_s=timeout, lateness_s=lateness, window_sizes=(60,))
    in_order, shuffled = _in_order_and_shuffled(seed, config)
    expected, expected_windows, n, _ = _sessions_by_events(in_order, config)
    got, windows, forwarded, proc = _sessions_by_events(shuffled, config)
    assert forwarded == n == len(in_order)
    assert got == expected
    assert proc.stats["late_events_60s"] == 0
    assert windows == expected_windows
    assert proc.held == {} and proc.stats["events_held"] == proc.stats["events_released"]


@pytest.mark.parametrize("timeout,lateness", [(120, 30), (30, 60)])
@pytest.mark.parametrize("states_saved", ["none", "half", "all"])
@pytest.mark.parametrize("crash_at", [2, 5, 9])
def test_held_events_survive_a_crash_between_saving_the_states_and_the_checkpoint(states_saved, crash_at, timeout,
                                                                                  lateness):
    """As the worker checkpoints: the batch's outputs go out, then the changed visitors' states are
    saved, then the checkpoint. A crash after the outputs, with none, some or all of the states saved,
    replays the batch from the previous checkpoint: what is forwarded, the sessions, every window's
    counts and the next-page counts come out as without the crash."""
    from stream_processor.merge import WindowMerger
    config = ProcessingConfig(session_timeout_s=timeout, lateness_s=lateness, window_sizes=(60,))
    _, arrival = _in_order_and_shuffled(5, config)
    rules = lambda: RuleSet()  # noqa: E731

    def drive(crash_at=None):
        visitors = {}
        proc = PartitionProcessor(0, config, visitors, rules)
        merger = WindowMerger(1, (60,), rules)
        forwarded, sessions, windows = {}, {}, {}

        def send(out):  # what reaches the topics; a record sent again must be the same
            for _, e in out.events:
                assert forwarded.setdefault(e.event_id, e.session_id) == e.session_id
            for s in out.sessions:
                assert sessions.setdefault(s.session_id, s) == s
            for p in out.partials:
                if p["kind"] == "window":
                    windows[(p["s"], p["source"])] = p["counts"]

        saved = (copy.deepcopy(proc.checkpoint()), {}, -1)  # (checkpoint, visitors' states, its offset)
        checkpoints, offset, batch = 0, 0, Output()
        while offset < len(arrival):
            proc.process(arrival[offset], "raw", offset, now=NOW, wall=0, out=batch)
            if offset % 7 == 6:
                steps = proc.take_transitions()
                if steps:
                    merger.add(copy.deepcopy(steps), NOW)
                send(batch)
                state = copy.deepcopy(proc.checkpoint())
                checkpoints += 1
                if checkpoints == crash_at:
                    written = {k: v for k, v in visitors.items() if k in batch.dirty and (
                        states_saved == "all" or (states_saved == "half" and k in "ace"))}
                    gone = {k for k in batch.dirty if k not in visitors and states_saved == "all"}
                    kept = {k: v for k, v in {**saved[1], **written}.items() if k not in gone}
                    visitors = copy.deepcopy(kept)
                    proc = PartitionProcessor(0, config, visitors, rules)
                    # The sessions sent after the checkpoint, as the restarted worker reads them back.
                    proc.restore(copy.deepcopy(saved[0]), closed_since=batch.sessions)
                    offset, crash_at, batch = saved[2] + 1, None, Output()
                    continue
                saved, batch = (state, copy.deepcopy(visitors), offset), Output()
            offset += 1
        batch.extend(proc.advance(1e12, now=NOW))
        send(batch)
        steps = proc.take_transitions()
        if steps:
            merger.add(steps, NOW)
        return forwarded, sessions, windows, merger.transitions, proc

    clean = drive()
    crashed = drive(crash_at=crash_at)
    assert clean[4].stats["events_held"] > 0
    assert len(clean[0]) == len(arrival)
    assert crashed[:4] == clean[:4]


def test_a_step_made_by_an_event_held_across_checkpoints_is_counted():
    """A held event makes its next-page step when it is released, after checkpoints past its offset
    were taken: the merger must still count it (its offset stays above the messages' ``from``)."""
    from stream_processor.merge import WindowMerger
    config = ProcessingConfig(session_timeout_s=120, lateness_s=30, window_sizes=(60,))
    proc = PartitionProcessor(0, config, {}, lambda: RuleSet())
    merger = WindowMerger(1, (60,), lambda: RuleSet())

    def checkpoint():
        steps = proc.take_transitions()
        if steps:
            merger.add(steps, NOW)
        proc.checkpoint()

    at = T0.timestamp()
    stream = [ev(1, 0, path="/a"), ev(2, 121 / 60, path="/c"),  # e2 is held: 121 s after e1
              ev(3, 121.5 / 60, anon="x", path="/x"), ev(4, 122 / 60, anon="x", path="/y"),
              ev(5, 122.5 / 60, anon="x", path="/x"), ev(6, 100 / 60, path="/b")]  # e6 bridges the gap
    for offset, event in enumerate(stream):
        proc.process(event, "raw", offset, now=NOW, wall=0)
        checkpoint()
    assert proc.stats["events_held"] == 1 and proc.held == {}
    assert proc.watermark == at + 122.5 - 30
    assert merger.transitions == {"web|/a": {"/b": 1}, "web|/b": {"/c": 1}, "web|/x": {"/y": 1}, "web|/y": {"/x": 1}}


def test_a_late_event_long_before_the_open_session_is_a_session_of_its_own_at_once():
    proc = PartitionProcessor(0, CONFIG, {}, lambda: RuleSet())
    proc.process(ev(1, 60), "raw", 0, now=NOW, wall=0)
    out = proc.process(ev(2, 10), "raw", 1, now=NOW, wall=0)  # the watermark is at 59 min
    assert [(e.event_id, e.session_id) for _, e in out.events] == [("e2", session_id_for("a1", "e2"))]
    assert [s.session_id for s in out.sessions] == [session_id_for("a1", "e2")]
    assert proc.held == {} and proc.stats["late_events_60s"] == 1
