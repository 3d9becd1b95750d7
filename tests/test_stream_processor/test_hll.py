import random

import pytest

from stream_processor.hll import HyperLogLog


@pytest.mark.parametrize("n", [0, 1, 100, 5_000, 200_000])
def test_estimate_within_two_percent(n):
    hll = HyperLogLog()
    for i in range(n):
        hll.add(f"visitor-{i}")
    assert abs(hll.count() - n) <= max(0.02 * n, 0)


def test_repeats_do_not_count_and_merge_is_a_union():
    rng = random.Random(5)
    a, b = HyperLogLog(), HyperLogLog()
    ids = [f"v{i}" for i in range(30_000)]
    for i in ids[:20_000]:
        a.add(i)
        a.add(i)
    for i in ids[10_000:]:
        b.add(i)
    rng.shuffle(ids)
    a.merge(b)
    assert abs(a.count() - 30_000) <= 600
    again = HyperLogLog.from_text(a.to_text())
    assert again.registers == a.registers
