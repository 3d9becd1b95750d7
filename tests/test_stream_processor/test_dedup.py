from stream_processor.dedup import check_and_remember

HOUR = 3600.0


def test_repeats_are_recognised_and_new_ids_remembered():
    seen: dict[str, float] = {}
    repeat, seen = check_and_remember(seen, "e1", 100.0, HOUR)
    assert not repeat
    repeat, seen2 = check_and_remember(seen, "e1", 100.0, HOUR)
    assert repeat and seen2 == seen
    repeat, seen = check_and_remember(seen, "e2", 50.0, HOUR)  # out of order, still new
    assert not repeat and set(seen) == {"e1", "e2"}


def test_ids_older_than_the_horizon_are_forgotten():
    seen: dict[str, float] = {}
    for i in range(100):
        _, seen = check_and_remember(seen, f"e{i}", i * 60.0, HOUR)  # one a minute
    assert len(seen) == 61  # the last hour's, plus the one exactly on the boundary
    assert "e0" not in seen and "e99" in seen
