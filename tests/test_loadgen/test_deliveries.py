"""Deliveries: every call sent once, some twice, some late; batches within the API's limits."""

from collections import Counter
from datetime import datetime, timedelta, timezone

from loadgen.deliveries import MAX_BATCH, SINGLE_ENDPOINTS, plan_deliveries
from loadgen.plan import plan_run
from loadgen.visitors import generate_calls

START = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def test_every_call_is_delivered_at_least_once_and_duplicates_keep_the_message_id():
    calls = generate_calls(1, start=START, span=timedelta(hours=6), target_calls=5000)
    deliveries = plan_deliveries(calls, 1, start=START)
    copies = Counter(c.message_id for d in deliveries for c in d.calls)
    assert set(copies) == {c.message_id for c in calls}
    assert max(copies.values()) == 2
    originals = {id(c) for c in calls}  # a resent call is the same call: same payload, same messageId
    assert all(id(c) in originals for d in deliveries for c in d.calls)


def test_shares_of_duplicates_late_calls_and_batches():
    calls = generate_calls(2, start=START, span=timedelta(hours=6), target_calls=10_000)
    deliveries = plan_deliveries(calls, 2, start=START)
    copies = Counter(c.message_id for d in deliveries for c in d.calls)
    assert 0.01 < sum(n - 1 for n in copies.values()) / len(calls) < 0.03
    sent_order = [c for d in deliveries for c in d.calls]
    late = sum(1 for a, b in zip(sent_order, sent_order[1:]) if b.at < a.at)
    assert late > 0.02 * len(calls)
    batched = sum(len(d.calls) for d in deliveries if d.endpoint == "batch")
    assert 0.6 < batched / len(sent_order) < 0.8


def test_batches_are_bounded_and_singles_go_to_their_own_endpoint():
    calls = generate_calls(3, start=START, span=timedelta(minutes=5), target_calls=5000)
    deliveries = plan_deliveries(calls, 3, start=START)
    assert all(len(d.calls) <= MAX_BATCH for d in deliveries)
    for d in deliveries:
        if d.endpoint != "batch":
            assert len(d.calls) == 1 and d.endpoint == d.calls[0].type in SINGLE_ENDPOINTS
            assert d.user_agent == d.calls[0].payload["context"]["userAgent"]
    # An unknown type would be overridden by a single endpoint's type: it must travel in a batch.
    assert all(d.endpoint == "batch" for d in deliveries for c in d.calls if c.type not in SINGLE_ENDPOINTS)
    assert [d.send_at for d in deliveries] == sorted(d.send_at for d in deliveries)


def test_live_runs_last_the_duration_and_backfills_compress_history():
    now = START
    live = plan_run(5, rate=50, duration_s=30, now=now)
    assert live.start == now and max(d.send_at for d in live.deliveries) <= 30
    assert all(now <= c.at <= now + timedelta(seconds=30) for c in live.calls)
    backfill = plan_run(5, rate=50, duration_s=30, now=now, backfill_from=now - timedelta(days=2))
    assert max(d.send_at for d in backfill.deliveries) <= 30
    assert min(c.at for c in backfill.calls) < now - timedelta(days=1)
    assert sorted(c.message_id for c in live.calls) == sorted(c.message_id for c in backfill.calls)


def test_same_seed_same_plan():
    a = plan_run(42, rate=20, duration_s=10, now=START)
    b = plan_run(42, rate=20, duration_s=10, now=START)
    assert [(d.send_at, d.endpoint, [c.payload for c in d.calls]) for d in a.deliveries] == \
        [(d.send_at, d.endpoint, [c.payload for c in d.calls]) for d in b.deliveries]


def test_which_calls_are_repeated_does_not_depend_on_when_the_run_happens():
    def repeated(plan):
        copies = Counter(c.message_id for d in plan.deliveries for c in d.calls)
        return {m for m, n in copies.items() if n > 1}

    live = plan_run(9, rate=100, duration_s=20, now=START)
    backfill = plan_run(9, rate=100, duration_s=20, now=START, backfill_from=START - timedelta(days=3))
    assert repeated(live) == repeated(backfill) and len(repeated(live)) > 10
