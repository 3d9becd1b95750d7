import gc

import pytest

from clickstream.garbage import THRESHOLDS, collect_less


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_collect_less_raises_the_thresholds_and_freezes_what_exists(restored_collector):
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    survivor = [object() for _ in range(10)]
    collect_less()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() >= len(survivor)


def test_without_freeze_only_the_thresholds_change(restored_collector):
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    collect_less(freeze=False)
    assert gc.get_threshold() == THRESHOLDS and gc.get_freeze_count() == 0
