from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from sink.compaction import LakeFile, conform, plan_deletions, plan_merges, plan_retention, split_superseded

NOW = datetime(2026, 11, 27, 12, 30, tzinfo=timezone.utc)
H9 = "events/dt=2026-11-27/hour=09"
H12 = "events/dt=2026-11-27/hour=12"  # the current hour: still open


def f(hour, p, first, last, size=10, age_s=3600):
    return LakeFile(f"{hour}/events-p{p}-{first}-{last}.parquet", "events", hour, p, first, last, size,
                    NOW - timedelta(seconds=age_s))


def test_runs_of_small_files_in_closed_hours_are_merged_per_partition():
    files = [f(H9, 0, 0, 9), f(H9, 0, 10, 19), f(H9, 0, 25, 30), f(H9, 1, 0, 4), f(H9, 1, 8, 9),
             f(H9, 2, 0, 3), f(H12, 0, 40, 49), f(H12, 0, 50, 59)]
    merges = plan_merges(files, closed_before=NOW, committed=None, target_bytes=1000)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-30.parquet", f"{H9}/events-p1-0-9.parquet"]
    assert [len(m.sources) for m in merges] == [3, 2]


def test_merges_respect_the_target_size():
    files = [f(H9, 0, i * 10, i * 10 + 9, size=40) for i in range(5)]
    merges = plan_merges(files, closed_before=NOW, committed=None, target_bytes=100)
    assert [(m.sources[0].first, m.sources[-1].last) for m in merges] == [(0, 19), (20, 39)]  # the 5th stays alone


def test_files_the_sink_has_not_committed_are_left_alone():
    files = [f(H9, 0, 0, 9), f(H9, 0, 10, 19), f(H9, 0, 20, 29)]
    merges = plan_merges(files, closed_before=NOW, committed={("events", 0): 20}, target_bytes=1000)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-19.parquet"]
    assert plan_merges(files, closed_before=NOW, committed={}, target_bytes=1000) == []


def test_superseded_files_are_not_merged_again_and_are_deleted_after_the_grace():
    small = [f(H9, 0, 0, 9), f(H9, 0, 10, 19)]
    fresh = f(H9, 0, 0, 19, age_s=60)
    live, superseded = split_superseded(small + [fresh])
    assert live == [fresh] and set(superseded) == {s.key for s in small}
    assert plan_merges(small + [fresh], closed_before=NOW, committed=None, target_bytes=1000) == []
    assert plan_deletions(small + [fresh], now=NOW, grace=timedelta(minutes=5)) == []
    old = f(H9, 0, 0, 19, age_s=600)
    assert {x.key for x in plan_deletions(small + [old], now=NOW, grace=timedelta(minutes=5))} == {
        s.key for s in small}


def test_retention_keeps_days_from_the_cutoff():
    old = f("events/dt=2026-11-20/hour=23", 0, 0, 1)
    kept = f("events/dt=2026-11-21/hour=00", 0, 2, 3)
    assert plan_retention([old, kept], keep_from=date(2026, 11, 21)) == [old]


def test_conform_fills_columns_older_objects_lack():
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    out = conform(pa.table({"a": [1, 2], "z": ["x", "y"]}), schema)
    assert out.column_names == ["a", "b", "z"]
    assert out["b"].to_pylist() == [None, None]
