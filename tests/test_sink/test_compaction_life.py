"""A lake's life in a model: sink flushes, sink restarts, compaction passes and deletions in any
order. After every step the live objects hold every record written exactly once, and the
readers' SQL (``query.engine.live_files_sql``) picks the same live objects as compaction does.
"""

from datetime import datetime, timedelta, timezone

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.lake import hour_object_key, parse_object_key
from query.engine import live_files_sql
from sink.compaction import LakeFile, plan_deletions, plan_merges, split_superseded

T0 = datetime(2026, 11, 27, 0, 0, tzinfo=timezone.utc)
EPOCH_HOUR = int(T0.timestamp()) // 3600
PARTITIONS = 3
GRACE = timedelta(minutes=5)

# A flush of ``count`` records of a partition; records past the topic's end are new, in the hours
# given; ``crash`` lists the hours whose upload is lost when the sink dies during the flush.
flush = st.tuples(st.just("flush"), st.integers(0, PARTITIONS - 1), st.integers(1, 12),
                  st.lists(st.integers(0, 2), min_size=12, max_size=12), st.sets(st.integers(0, 2), max_size=2))
commit = st.tuples(st.just("commit"), st.integers(0, PARTITIONS - 1))
compact = st.tuples(st.just("compact"), st.integers(1, 60), st.booleans(), st.integers(0, 3))
steps = st.lists(st.one_of(flush, flush, commit, compact), min_size=1, max_size=30)


class Lake:
    def __init__(self):
        self.files: dict[str, tuple[LakeFile, frozenset]] = {}  # key -> (file, records it holds)
        self.topic: list[list[int]] = [[] for _ in range(PARTITIONS)]  # each record's hour, by offset
        self.position = [0] * PARTITIONS  # where the sink reads next
        self.committed = [0] * PARTITIONS
        self.now = T0 + timedelta(hours=4)

    def put(self, key: str, records: frozenset, size: int) -> None:
        if key in self.files:  # a key always names the same rows: a rewrite changes nothing
            assert self.files[key][1] == records, key
        table, ranges = parse_object_key(key)
        self.files[key] = (LakeFile(key, table, key.rsplit("/", 1)[0], ranges, size, self.now), records)

    def stored(self, partition: int, offset: int, hour: int) -> bool:
        """The sink's ``StoredOffsets``: an object of the hour spans the offset in the partition."""
        prefix = hour_object_key("events", EPOCH_HOUR + hour, 0, 0, 0).rsplit("/", 1)[0]
        return any(f.hour_prefix == prefix and any(p == partition and first <= offset <= last
                                                   for p, first, last in f.ranges)
                   for f, _ in self.files.values())

    def flush(self, partition: int, count: int, hours: list[int], crash: set[int]) -> None:
        """The sink reads ``count`` records on and uploads one object per hour of the records not
        yet in the lake. If the upload of an hour in ``crash`` is lost, the sink dies: it starts
        again from its committed offset."""
        topic, start = self.topic[partition], self.position[partition]
        while len(topic) < start + count:
            topic.append(hours[len(topic) % len(hours)])
        by_hour: dict[int, list] = {}
        for offset in range(start, start + count):
            if not self.stored(partition, offset, topic[offset]):
                by_hour.setdefault(topic[offset], []).append((partition, offset, topic[offset]))
        for hour, records in sorted(by_hour.items()):
            if hour in crash:
                self.position[partition] = self.committed[partition]
                return
            key = hour_object_key("events", EPOCH_HOUR + hour, partition, records[0][1], records[-1][1])
            self.put(key, frozenset(records), len(records))
        self.position[partition] = start + count

    def compact(self, target: int, check_offsets: bool, advance_min: int) -> None:
        self.now += timedelta(minutes=advance_min * 3)
        files = [f for f, _ in self.files.values()]
        for f in plan_deletions(files, now=self.now, grace=GRACE):
            del self.files[f.key]
        # --no-offset-check is for a stopped sink: it has committed all it wrote.
        committed = {("events", p): self.committed[p] for p in range(PARTITIONS)} if check_offsets else None
        if not check_offsets:
            self.committed = list(self.position)
        for merge in plan_merges([f for f, _ in self.files.values()], closed_before=T0 + timedelta(hours=3),
                                 committed=committed, target_bytes=target):
            records = frozenset().union(*(self.files[s.key][1] for s in merge.sources))
            self.put(merge.key, records, merge.size)

    def live(self) -> list[LakeFile]:
        return split_superseded([f for f, _ in self.files.values()])[0]

    def written(self) -> list:
        return sorted(r for _, records in self.files.values() for r in records)


def sql_live(tmp_path, keys) -> list[str]:
    for key in keys:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    found = duckdb.connect().execute(live_files_sql(f"{tmp_path}/events/*/*/*.parquet")).fetchall()
    for key in keys:
        (tmp_path / key).unlink()
    return sorted(row[0].removeprefix(f"{tmp_path}/") for row in found)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_live_objects_hold_every_record_once_and_readers_agree(tmp_path_factory, steps):
    tmp_path = tmp_path_factory.mktemp("lake")
    lake = Lake()
    for step in steps:
        if step[0] == "flush":
            lake.flush(*step[1:])
        elif step[0] == "commit":
            lake.committed[step[1]] = lake.position[step[1]]
        else:
            lake.compact(*step[1:])
        live = lake.live()
        held = sorted(r for f in live for r in lake.files[f.key][1])
        assert held == sorted(set(lake.written()))  # every record written, none twice
        assert sql_live(tmp_path, list(lake.files)) == sorted(f.key for f in live)
    # The sink catches up to the end of every partition: the lake then holds the whole topic.
    for p in range(PARTITIONS):
        while lake.position[p] < len(lake.topic[p]):
            lake.flush(p, 12, [0], set())
    held = sorted(r for f in lake.live() for r in lake.files[f.key][1])
    assert held == sorted((p, o, h) for p in range(PARTITIONS) for o, h in enumerate(lake.topic[p]))


def test_the_model_merges_across_partitions():
    """The property above is not vacuous: its steps do produce merged objects of several partitions."""
    lake = Lake()
    for p in range(PARTITIONS):
        lake.flush(p, 3, [0, 0, 1], set())
        lake.flush(p, 2, [0, 0, 1], set())
    lake.compact(1000, False, 0)
    assert [f.key for f in lake.live()] == [
        "events/dt=2026-11-27/hour=00/events-p0-0-4-p1-0-4-p2-0-4.parquet",
        "events/dt=2026-11-27/hour=01/events-p0-2-2-p1-2-2-p2-2-2.parquet",
    ]
