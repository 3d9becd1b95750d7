from datetime import datetime, timedelta, timezone

import pytest

from stream_processor.rules import page_view_threshold
from stream_processor.windows import count_event, window_start

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "offset_s,size_s,expected_s",
    [(0, 60, 0), (59.9, 60, 0), (60, 60, 60), (125, 60, 120), (9, 10, 0), (3599, 3600, 0)],
)
def test_window_start(offset_s, size_s, expected_s):
    assert window_start(T0 + timedelta(seconds=offset_s), size_s) == T0 + timedelta(seconds=expected_s)


def test_counts_per_window_and_prunes_old_windows():
    counts: dict[str, int] = {}
    for s in [0, 10, 59, 60, 61, 130, 190]:
        counts, w = count_event(counts, T0 + timedelta(seconds=s), size_s=60, retain_windows=2)
    # windows 12:02 and 12:03 kept, 12:00 and 12:01 pruned
    assert counts == {str(int((T0 + timedelta(minutes=2)).timestamp())): 1,
                      str(int((T0 + timedelta(minutes=3)).timestamp())): 1}


def test_event_for_a_pruned_window_is_late_and_not_counted():
    counts = {}
    for s in [0, 300]:
        counts, _ = count_event(counts, T0 + timedelta(seconds=s), size_s=60, retain_windows=2)
    before = dict(counts)
    counts, w = count_event(counts, T0 + timedelta(seconds=5), size_s=60, retain_windows=2)
    assert w.late and counts == before


def test_late_but_retained_window_is_counted():
    counts = {}
    for s in [0, 61, 5]:
        counts, w = count_event(counts, T0 + timedelta(seconds=s), size_s=60, retain_windows=2)
    assert not w.late and w.count == 2 and w.start == T0


def test_threshold_fires_once_per_window():
    counts, fired = {}, []
    for s in range(0, 120, 10):  # 6 events per window
        counts, w = count_event(counts, T0 + timedelta(seconds=s), size_s=60, retain_windows=3)
        r = page_view_threshold("demo:/x", w, 3, now=T0)
        if r:
            fired.append(r)
    assert [r.window_start for r in fired] == [T0, T0 + timedelta(minutes=1)]
    assert all(r.value == 3 and r.threshold == 3 for r in fired)
    # the id depends only on rule, subject and window: a replay fires the same ids
    counts, again = {}, []
    for s in range(0, 60, 10):
        counts, w = count_event(counts, T0 + timedelta(seconds=s), size_s=60, retain_windows=3)
        r = page_view_threshold("demo:/x", w, 3, now=T0 + timedelta(hours=1))
        if r:
            again.append(r.reaction_id)
    assert again == [fired[0].reaction_id]
