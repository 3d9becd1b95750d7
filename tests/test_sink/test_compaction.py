from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from sink.compaction import LakeFile, conform, plan_deletions, plan_merges, plan_retention, split_superseded

NOW = datetime(2026, 11, 27, 12, 30, tzinfo=timezone.utc)
H9 = "events/dt=2026-11-27/hour=09"
H10 = "events/dt=2026-11-27/hour=10"
H12 = "events/dt=2026-11-27/hour=12"  # the current hour: still open


def f(hour, p, first, last, size=10, age_s=3600):
    return LakeFile(f"{hour}/events-p{p}-{first}-{last}.parquet", "events", hour, ((p, first, last),), size,
                    NOW - timedelta(seconds=age_s))


def merged(hour, ranges, size=10, age_s=3600):
    name = "-".join(f"p{p}-{first}-{last}" for p, first, last in ranges)
    return LakeFile(f"{hour}/events-{name}.parquet", "events", hour, tuple(ranges), size,
                    NOW - timedelta(seconds=age_s))


def test_small_files_of_a_closed_hour_are_merged_across_partitions():
    files = [f(H9, 0, 0, 9), f(H9, 0, 10, 19), f(H9, 0, 25, 30), f(H9, 1, 0, 4), f(H9, 1, 8, 9),
             f(H9, 2, 0, 3), f(H10, 1, 5, 7), f(H12, 0, 40, 49), f(H12, 0, 50, 59)]
    merges = plan_merges(files, closed_before=NOW, committed=None, target_bytes=1000)
    # H10 has a single file: nothing to merge. H12 is still open.
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-30-p1-0-9-p2-0-3.parquet"]
    assert [len(m.sources) for m in merges] == [6]


def test_merges_respect_the_target_size():
    files = [f(H9, 0, i * 10, i * 10 + 9, size=40) for i in range(5)]
    merges = plan_merges(files, closed_before=NOW, committed=None, target_bytes=100)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-19.parquet", f"{H9}/events-p0-20-39.parquet"]
    # Runs follow partition, then offset order, and may end in the middle of a partition.
    files = [f(H9, 0, 0, 9, size=40), f(H9, 1, 0, 9, size=40), f(H9, 1, 10, 19, size=40), f(H9, 2, 0, 9, size=40)]
    merges = plan_merges(files, closed_before=NOW, committed=None, target_bytes=100)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-9-p1-0-9.parquet", f"{H9}/events-p1-10-19-p2-0-9.parquet"]


def test_files_the_sink_has_not_committed_are_left_alone():
    files = [f(H9, 0, 0, 9), f(H9, 0, 10, 19), f(H9, 0, 20, 29)]
    merges = plan_merges(files, closed_before=NOW, committed={("events", 0): 20}, target_bytes=1000)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-19.parquet"]
    assert plan_merges(files, closed_before=NOW, committed={}, target_bytes=1000) == []
    # Per partition: p1's files are past its committed offset, p0's are not.
    files = [f(H9, 0, 0, 9), f(H9, 1, 0, 9), f(H9, 1, 10, 19), f(H9, 2, 0, 9)]
    committed = {("events", 0): 10, ("events", 1): 5, ("events", 2): 10}
    merges = plan_merges(files, closed_before=NOW, committed=committed, target_bytes=1000)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-9-p2-0-9.parquet"]


def test_superseded_files_are_not_merged_again_and_are_deleted_after_the_grace():
    small = [f(H9, 0, 0, 9), f(H9, 0, 10, 19), f(H9, 1, 0, 9)]
    fresh = merged(H9, [(0, 0, 19), (1, 0, 9)], age_s=60)
    live, superseded = split_superseded(small + [fresh])
    assert live == [fresh] and set(superseded) == {s.key for s in small}
    assert plan_merges(small + [fresh], closed_before=NOW, committed=None, target_bytes=1000) == []
    assert plan_deletions(small + [fresh], now=NOW, grace=timedelta(minutes=5)) == []
    old = merged(H9, [(0, 0, 19), (1, 0, 9)], age_s=600)
    assert {x.key for x in plan_deletions(small + [old], now=NOW, grace=timedelta(minutes=5))} == {
        s.key for s in small}


def test_an_object_is_superseded_only_when_every_range_of_it_is_covered():
    two = merged(H9, [(0, 0, 19), (1, 0, 9)])
    assert split_superseded([two, f(H9, 0, 0, 30)])[0] == [two, f(H9, 0, 0, 30)]  # p1 is not covered
    assert split_superseded([two, merged(H9, [(0, 0, 19), (1, 0, 8)])])[1] == {
        merged(H9, [(0, 0, 19), (1, 0, 8)]).key: two}
    assert split_superseded([two, f(H10, 0, 0, 9)])[0] == [two, f(H10, 0, 0, 9)]  # another hour


def test_a_merged_object_and_the_files_that_came_after_it_merge_again():
    first = merged(H9, [(0, 0, 19), (1, 0, 9)])
    later = [f(H9, 0, 30, 39), f(H9, 1, 15, 19), f(H9, 3, 0, 2)]
    merges = plan_merges([first] + later, closed_before=NOW, committed=None, target_bytes=1000)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-39-p1-0-19-p3-0-2.parquet"]


def test_a_run_whose_ranges_would_claim_another_files_offsets_is_not_merged():
    # Not something the sink and compaction produce: two merged objects whose p1 ranges lie on
    # either side of a small file's. A merge of the two alone would be named for p1's offsets
    # 0-29 without holding that file's rows, and readers would skip the file.
    odd = [merged(H9, [(0, 0, 9), (1, 0, 9)]), merged(H9, [(0, 10, 19), (1, 20, 29)])]
    between = f(H9, 1, 10, 19)
    assert plan_merges(odd + [between], closed_before=NOW, committed=None, target_bytes=20) == []
    merges = plan_merges(odd + [between], closed_before=NOW, committed=None, target_bytes=1000)
    assert [m.key for m in merges] == [f"{H9}/events-p0-0-19-p1-0-29.parquet"]
    assert len(merges[0].sources) == 3


def test_retention_keeps_days_from_the_cutoff():
    old = f("events/dt=2026-11-20/hour=23", 0, 0, 1)
    kept = f("events/dt=2026-11-21/hour=00", 0, 2, 3)
    assert plan_retention([old, kept], keep_from=date(2026, 11, 21)) == [old]


def test_conform_fills_columns_older_objects_lack():
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    out = conform(pa.table({"a": [1, 2], "z": ["x", "y"]}), schema)
    assert out.column_names == ["a", "b", "z"]
    assert out["b"].to_pylist() == [None, None]


def test_a_merge_writes_its_sources_in_order_in_row_groups_of_a_bounded_size(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from sink import compaction
    from sink.compaction import Merge, run_merge, to_parquet_table
    from sink.destination import LakeDestination

    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 4)
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    from clickstream.settings import Settings

    destination = LakeDestination.from_settings(Settings(_env_file=None, lake_dir=tmp_path))
    sources = [
        pa.table({"a": [1, 2, 3]}),  # written before column b existed
        pa.table({"a": [4, 5], "b": ["x", "y"], "extra": [None, None]}),  # a column the schema lacks, all null
        pa.table({"b": ["z"] * 6, "a": list(range(6, 12)), "extra": ["e"] * 6}),
    ]
    files = []
    for i, table in enumerate(sources):
        key = f"{H9}/events-p{i}-0-{table.num_rows - 1}.parquet"
        destination.put(key, to_parquet_table(table))
        files.append(LakeFile(key, "events", H9, ((i, 0, table.num_rows - 1),), 10, NOW))
    merge = Merge("events", H9, tuple(files))
    assert run_merge(destination, merge, schema) == 11
    written = pq.ParquetFile(tmp_path / merge.key)
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [4, 4, 3]
    table = written.read()
    assert table.column_names == ["a", "b", "extra"]
    assert table["a"].to_pylist() == list(range(1, 12))
    assert table["b"].to_pylist() == [None] * 3 + ["x", "y"] + ["z"] * 6
    assert table["extra"].to_pylist() == [None] * 5 + ["e"] * 6
