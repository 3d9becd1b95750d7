"""Copies of a record left by a retried produce."""

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
