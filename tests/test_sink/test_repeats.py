"""Copies of a record left by a retried produce."""

from hypothesis import given, settings
from hypothesis import strategies as st

from sink.repeats import WINDOW, RecentIds, window_start


def test_a_copy_within_the_window_is_a_repeat_and_the_first_is_kept():
    recent = RecentIds()
    assert [recent.is_repeat(i, o) for o, i in enumerate(["a", "b", "a", "c", "b"])] == [
        False, False, True, False, True]


def test_only_the_window_before_a_record_decides():
    recent = RecentIds()
    assert not recent.is_repeat("a", 0)
    assert recent.is_repeat("a", WINDOW)  # offset 0 is the first of the window before it
    recent = RecentIds()
    assert not recent.is_repeat("b", 5)
    assert not recent.is_repeat("b", WINDOW + 6)  # offset 5 left the window


def test_reading_the_same_record_again_is_not_a_repeat():
    recent = RecentIds()
    assert not recent.is_repeat("a", 5)
    assert not recent.is_repeat("a", 5)


def test_the_window_before_a_resume_point():
    assert window_start(3) == 0 and window_start(WINDOW + 7) == 7


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6000)), min_size=1, max_size=60),
    st.lists(st.integers(1, 30), min_size=1, max_size=10),
)
def test_a_flush_at_once_finds_what_one_record_at_a_time_finds(records, cuts):
    """``repeats`` over batches against ``is_repeat`` record by record:
    the same repeats and the same memory after each batch (ids from a small pool, offsets with
    gaps of up to more than half the window, so ids leave the window within a batch too)."""
    ids, offsets, offset = [], [], 0
    for n, gap in records:
        offset += gap
        ids.append(f"id{n}" if n < 30 else f"fresh{offset}")
        offsets.append(offset)
    one, batched = RecentIds(), RecentIds()
    start = 0
    for cut in cuts * len(ids):
        if start >= len(ids):
            break
        end = min(len(ids), start + cut)
        expected = [i for i in range(end - start) if one.is_repeat(ids[start + i], offsets[start + i])]
        assert batched.repeats(ids[start:end], offsets[start:end]) == expected
        assert (batched._latest, list(batched._order)) == (one._latest, list(one._order))
        start = end


def test_a_flush_remembers_its_ids_for_the_next():
    recent = RecentIds()
    assert recent.repeats(["a", "b"], [0, 1]) == []
    assert recent.repeats(["c", "a"], [2, 3]) == [1]
