"""Window maths, and windowed metrics from partitions through the merger against a hand count."""

import copy
import random
from collections import Counter
from datetime import datetime, timezone

import pytest

from clickstream import metrics as m
from clickstream.events import Event
from stream_processor.merge import WindowMerger
from stream_processor.partition import PartitionProcessor, ProcessingConfig
from stream_processor.rules import RuleSet
from stream_processor.windows import closes_through, window_start

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("t,size,start", [
    (0, 60, 0), (59.999, 60, 0), (60, 60, 60), (125.5, 10, 120), (86399, 60, 86340), (-1, 60, -60),
])
def test_window_start(t, size, start):
    assert window_start(t, size) == start


@pytest.mark.parametrize("watermark,size,through", [(119.9, 60, 60), (120, 60, 120), (9, 10, 0)])
def test_a_window_closes_when_the_watermark_reaches_its_end(watermark, size, through):
    assert closes_through(watermark, size) == through


def event(n, t, visitor, **fields):
    ts = datetime.fromtimestamp(t, tz=timezone.utc)
    values = dict(event_id=f"e{n}", type="page", anonymous_id=visitor, timestamp=ts, received_at=ts,
                  source="web", path="/")
    values.update(fields)
    return Event(**values)


def run_pipeline(events, partitions=2, config=None, shuffle_within=0.0, seed=1):
    """Feed events to per-partition processors (by visitor, as Kafka would), then the merger."""
    config = config or ProcessingConfig(session_timeout_s=600, lateness_s=30, window_sizes=(60, 10))
    procs = [PartitionProcessor(p, config, {}, lambda: RuleSet()) for p in range(partitions)]
    merger = WindowMerger(partitions, config.window_sizes, lambda: RuleSet())
    rows, partials, offsets = [], [], Counter()
    for e in events:
        p = sum(map(ord, e.anonymous_id)) % partitions
        partials += procs[p].process(e, "raw", offsets[p], now=NOW, wall=0).partials
        offsets[p] += 1
    for proc in procs:
        partials += proc.advance(T0 + 86400, now=NOW).partials
    for partial in partials:
        rows += merger.add(partial, NOW)[0]
    return rows, procs


def test_page_views_per_window_and_path_match_a_hand_count():
    rng = random.Random(7)
    events = []
    for n in range(3000):
        t = T0 + n * 0.7
        events.append(event(n, t, f"v{rng.randrange(200)}", path=rng.choice(["/", "/a", "/b"])))
    rows, _ = run_pipeline(events)
    expected = Counter((int(e.timestamp.timestamp()) // 60 * 60, e.path) for e in events)
    got = {(int(r.window_start.timestamp()), m.parse_dimension(r.dimension)["path"]): r.value
           for r in rows if r.metric == m.PAGE_VIEWS and r.window_s == 60 and r.dimension}
    assert got == {k: float(v) for k, v in expected.items()}
    totals = Counter(int(e.timestamp.timestamp()) // 10 * 10 for e in events)
    got10 = {int(r.window_start.timestamp()): r.value
             for r in rows if r.metric == m.EVENTS and r.window_s == 10 and r.dimension == ""}
    assert {k: v for k, v in got10.items() if v} == {k: float(v) for k, v in totals.items()}
    # Every window's rows appear once.
    keys = [(r.window_start, r.window_s, r.source, r.metric, r.dimension) for r in rows]
    assert len(keys) == len(set(keys))


def test_unique_visitors_active_sessions_and_bounces():
    # Window [T0, T0+60): 40 visitors, the first 10 with 2 page views (no bounce), the rest with one.
    events, n = [], 0
    for v in range(40):
        for k in range(2 if v < 10 else 1):
            events.append(event(n, T0 + v + k * 0.5, f"v{v}"))
            n += 1
    rows, _ = run_pipeline(events, config=ProcessingConfig(session_timeout_s=120, lateness_s=0, window_sizes=(60,)))
    by = {(r.metric, int(r.window_start.timestamp())): r.value for r in rows if r.dimension == ""}
    assert by[(m.UNIQUE_VISITORS, T0)] == 40
    assert by[(m.ACTIVE_SESSIONS, T0)] == 40
    assert by[(m.SESSIONS_STARTED, T0)] == 40
    # Sessions end at their last event + 120 s: all inside [T0+120, T0+180).
    assert by[(m.SESSIONS_ENDED, T0 + 120)] == 40
    assert by[(m.BOUNCES, T0 + 120)] == 30
    assert by[(m.BOUNCE_RATE, T0 + 120)] == 0.75


def test_late_events_are_counted_not_added_to_closed_windows():
    config = ProcessingConfig(session_timeout_s=600, lateness_s=10, window_sizes=(60,))
    events = [event(1, T0 + 5, "a"), event(2, T0 + 200, "a"), event(3, T0 + 6, "b")]  # e3 is 194 s late
    rows, procs = run_pipeline(events, partitions=1, config=config)
    by = {(r.metric, int(r.window_start.timestamp())): r.value for r in rows if r.dimension == ""}
    assert by[(m.PAGE_VIEWS, T0)] == 1
    assert sum(v for (metric, _), v in by.items() if metric == m.LATE_EVENTS) == 1
    assert procs[0].stats["late_events_60s"] == 1


def test_a_merged_window_waits_for_every_partition():
    config = ProcessingConfig(session_timeout_s=600, lateness_s=0, window_sizes=(60,))
    rules = lambda: RuleSet()  # noqa: E731
    p0, p1 = (PartitionProcessor(p, config, {}, rules) for p in (0, 1))
    merger = WindowMerger(2, (60,), rules)
    parts = p0.process(event(1, T0 + 1, "a"), "raw", 0, now=NOW, wall=0).partials
    parts += p0.process(event(2, T0 + 70, "a"), "raw", 1, now=NOW, wall=0).partials
    assert not any(merger.add(x, NOW)[0] for x in parts)  # partition 1 has not reported progress
    parts = p1.process(event(3, T0 + 65, "b"), "raw", 0, now=NOW, wall=0).partials
    rows = [row for x in parts for row in merger.add(x, NOW)[0]]
    assert {(r.metric, r.value) for r in rows if r.dimension == "" and r.metric == m.EVENTS} == {(m.EVENTS, 1.0)}
    # The same partial again (read twice after a crash) changes nothing.
    assert merger.add(parts[0], NOW) == ([], [])


def test_checkpoint_restore_gives_the_same_result_as_an_uninterrupted_run():
    rng = random.Random(3)
    events = [event(n, T0 + n * 0.5, f"v{rng.randrange(30)}") for n in range(600)]
    config = ProcessingConfig(session_timeout_s=60, lateness_s=5, window_sizes=(60,))

    def drive(crash_at=None):
        visitors, rules = {}, (lambda: RuleSet())
        proc = PartitionProcessor(0, config, visitors, rules)
        out_sessions, out_partials, saved = [], [], None
        offset = 0
        while offset < len(events):
            out = proc.process(events[offset], "raw", offset, now=NOW, wall=0)
            out_sessions += out.sessions
            out_partials += out.partials
            if offset % 50 == 49:
                saved = (copy.deepcopy(proc.checkpoint()), copy.deepcopy(visitors), len(out_sessions),
                         len(out_partials), offset)
            if crash_at is not None and offset == crash_at:
                # Lose memory; keep what was checkpointed, replay from its offset (minus a few, as a
                # consumer would from an older commit).
                state, kept, ns, np_, at = saved
                visitors = copy.deepcopy(kept)
                proc = PartitionProcessor(0, config, visitors, rules)
                proc.restore(state)
                out_sessions, out_partials = out_sessions[:ns], out_partials[:np_]
                offset, crash_at = at - 7, None
            offset += 1
        fin = proc.advance(T0 + 86400, now=NOW)
        return out_sessions + fin.sessions, out_partials + fin.partials

    clean = drive()
    crashed = drive(crash_at=333)
    assert sorted(s.model_dump_json() for s in crashed[0]) == sorted(s.model_dump_json() for s in clean[0])
    assert crashed[1] == clean[1]


def test_next_pages_are_counted_in_time_order_and_recommended():
    from stream_processor.recommendations import recommend
    config = ProcessingConfig(session_timeout_s=600, lateness_s=30, window_sizes=(60,))
    proc = PartitionProcessor(0, config, {}, lambda: RuleSet())
    merger = WindowMerger(1, (60,), lambda: RuleSet())
    paths = [("a", "/"), ("a", "/x"), ("a", "/y"), ("b", "/"), ("b", "/x"), ("c", "/"), ("c", "/y"), ("c", "/y")]
    for n, (visitor, path) in enumerate(paths):
        proc.process(event(n, T0 + n, visitor, path=path), "raw", n, now=NOW, wall=0)
    # Out of order: an earlier page arriving late makes no step.
    proc.process(event(99, T0 + 0.5, "b", path="/late"), "raw", 99, now=NOW, wall=0)
    merger.add(proc.take_transitions(), NOW)
    assert proc.take_transitions() is None
    updates = merger.take_recommendation_updates()
    assert updates == {"web|/": {"/x": 2, "/y": 1}, "web|/x": {"/y": 1}}
    assert recommend(updates["web|/"], 1) == [{"path": "/x", "count": 2, "probability": 0.6667}]


@pytest.mark.parametrize("states_saved", ["none", "half", "all"])
def test_next_page_counts_survive_a_crash_between_sending_them_and_the_checkpoint(states_saved):
    """As the worker checkpoints: the transitions go out with the batch's outputs, then the visitors'
    states are saved, then the checkpoint. A crash after the outputs (with none, some or all of the
    states saved) replays the batch from the previous checkpoint; the merger must count each step once."""
    rng = random.Random(11)
    pages = ["/", "/pricing", "/docs", "/signup", "/blog"]
    events = [event(n, T0 + n * 0.5, f"v{rng.randrange(25)}", path=rng.choice(pages)) for n in range(700)]
    config = ProcessingConfig(session_timeout_s=60, lateness_s=5, window_sizes=(60,))
    rules = lambda: RuleSet()  # noqa: E731

    def drive(crash_at=None):
        visitors = {}
        proc = PartitionProcessor(0, config, visitors, rules)
        merger = WindowMerger(1, (60,), rules)
        saved = (copy.deepcopy(proc.checkpoint()), {}, -1)  # (checkpoint, visitors' states, its offset)
        checkpoints, offset = 0, 0
        while offset < len(events):
            proc.process(events[offset], "raw", offset, now=NOW, wall=0)
            if offset % 40 == 39:
                steps = proc.take_transitions()
                if steps:
                    merger.add(copy.deepcopy(steps), NOW)  # sent with the batch's outputs
                state = copy.deepcopy(proc.checkpoint())
                checkpoints += 1
                if checkpoints == crash_at:
                    # The states the crash left: none, those of odd-numbered visitors, or all written anew.
                    written = {k: v for k, v in visitors.items() if states_saved == "all" or
                               (states_saved == "half" and int(k[1:]) % 2)}
                    kept = {**saved[1], **written}
                    visitors = copy.deepcopy(kept)
                    proc = PartitionProcessor(0, config, visitors, rules)
                    proc.restore(copy.deepcopy(saved[0]))
                    offset, crash_at = saved[2] + 1, None  # the consumer resumes after the checkpoint
                    continue
                saved = (state, copy.deepcopy(visitors), offset)
            offset += 1
        steps = proc.take_transitions()
        if steps:
            merger.add(steps, NOW)
        return merger

    clean = drive()
    crashed = drive(crash_at=9)
    assert crashed.transitions == clean.transitions
    assert sum(n for nexts in clean.transitions.values() for n in nexts.values()) > 300
    if states_saved != "all":  # the replay did send steps again, and the merger left them out
        assert crashed.stats["steps_counted_before"] > 0
    assert clean.stats["steps_counted_before"] == 0
    restored = WindowMerger(1, (60,), rules)
    restored.restore(copy.deepcopy(crashed.to_dict()))
    assert restored.steps_counted == crashed.steps_counted


def test_next_page_counts_sent_again_over_a_shorter_or_longer_range_count_once():
    merger = WindowMerger(1, (60,), lambda: RuleSet())

    def steps(start, *offsets):
        return {"kind": "transitions", "p": 0, "w": 60, "from": start,
                "counts": [["web", "/", "/x", len(offsets)]], "offsets": [list(offsets)]}

    merger.add(steps(9, 10, 12, 15), NOW)  # sent before a crash: steps after the checkpoint at 9
    merger.add(steps(9, 10, 12), NOW)  # the restarted partition checkpointed sooner, at 13
    merger.add(steps(13, 15, 17), NOW)  # ... and its next message repeats 15
    merger.add(steps(9, 12), NOW)  # a message read again by a restarted merger
    merger.add(steps(13, 16), NOW)
    assert merger.transitions == {"web|/": {"/x": 5}}  # 10, 12, 15, 16, 17
    assert merger.steps_counted == {0: (13, {15, 16, 17})}
    assert merger.stats["steps_counted_before"] == 4
    # From a partition of an earlier version, without offsets: counted as sent.
    merger.add({"kind": "transitions", "p": 1, "w": 60, "counts": [["web", "/", "/x", 2]]}, NOW)
    assert merger.transitions == {"web|/": {"/x": 7}}
