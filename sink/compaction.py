"""Compaction and retention of the lake.

The sink writes many small objects (one per partition, hour and flush). Compaction merges
the objects of one table and hour, from every Kafka partition, into objects of about
``target_bytes``. A merged object is named for the offset range it covers in each partition
(``clickstream.lake.ranges_object_key``). Readers (``query.engine.live_files_sql``) skip any
object each of whose ranges lies inside a range of another object, so from the moment a
merged object exists its small objects are invisible; they are deleted in a later run,
after ``grace`` has passed, so that a query that listed them before the merge can still
read them. No reader ever sees a row twice or misses one.

An hour holds one object per partition and flush, however quiet the site: with the sink's
default four partitions and a merge per partition, a month of a small site's events was
still about 2,900 objects of 200 KB, and DuckDB spent half of a query's scan on opening
them. Merged across partitions, an hour of up to ``target_bytes`` is one object.

Only closed hours are merged, and only objects below the sink's committed offset, so a
sink that is recovering from a crash never finds a merged range that spans records it
still has to write.

Planning is pure (lists in, plans out); :func:`run_merge` and the callers do the I/O.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from clickstream.lake import OffsetRange, parse_object_key, ranges_object_key
from sink.destination import LakeDestination, ObjectInfo
from sink.tables import TABLES


@dataclass(frozen=True)
class LakeFile:
    key: str
    table: str
    hour_prefix: str  # e.g. events/dt=2026-11-27/hour=09
    ranges: tuple[OffsetRange, ...]  # (partition, first, last), in partition order
    size: int
    modified: datetime | None

    @property
    def group(self) -> tuple[str, str]:
        return self.table, self.hour_prefix

    def covers(self, other: LakeFile) -> bool:
        """Each range of ``other`` lies inside this object's range of the same partition."""
        if self.group != other.group:
            return False
        mine = {p: (first, last) for p, first, last in self.ranges}
        for p, first, last in other.ranges:
            span = mine.get(p)
            if span is None or not (span[0] <= first and last <= span[1]):
                return False
        return True


def parse_files(objects: list[ObjectInfo]) -> list[LakeFile]:
    files = []
    for o in objects:
        parsed = parse_object_key(o.key)
        if parsed is not None and "/" in o.key:
            table, ranges = parsed
            files.append(LakeFile(o.key, table, o.key.rsplit("/", 1)[0], ranges, o.size, o.modified))
    return files


def split_superseded(files: list[LakeFile]) -> tuple[list[LakeFile], dict[str, LakeFile]]:
    """Live files, and each superseded file's key mapped to the file that covers it."""
    # A cover holds a range in the first partition of the file it covers: only those are tried.
    by_partition: dict[tuple, list[LakeFile]] = defaultdict(list)
    for f in files:
        for p, _first, _last in f.ranges:
            by_partition[(*f.group, p)].append(f)
    live, superseded = [], {}
    for f in files:
        candidates = by_partition[(*f.group, f.ranges[0][0])]
        cover = next((g for g in candidates if g.key != f.key and g.covers(f)), None)
        if cover is None:
            live.append(f)
        else:
            superseded[f.key] = cover
    return live, superseded


def hour_start(hour_prefix: str) -> datetime:
    """``events/dt=2026-11-27/hour=09`` -> 2026-11-27 09:00 UTC."""
    _table, dt, hour = hour_prefix.split("/")
    day = date.fromisoformat(dt.removeprefix("dt="))
    return datetime(day.year, day.month, day.day, int(hour.removeprefix("hour=")), tzinfo=timezone.utc)


def spans(files: list[LakeFile] | tuple[LakeFile, ...]) -> list[OffsetRange]:
    """Per partition, the offsets from the first to the last that ``files`` hold, in partition order."""
    span: dict[int, tuple[int, int]] = {}
    for f in files:
        for p, first, last in f.ranges:
            low, high = span.get(p, (first, last))
            span[p] = (min(low, first), max(high, last))
    return [(p, *span[p]) for p in sorted(span)]


@dataclass(frozen=True)
class Merge:
    table: str
    hour_prefix: str
    sources: tuple[LakeFile, ...]

    @property
    def key(self) -> str:
        return ranges_object_key(self.hour_prefix, self.table, spans(self.sources))

    @property
    def size(self) -> int:
        return sum(f.size for f in self.sources)


def _committed(group: list[LakeFile], table: str, committed: dict[tuple[str, int], int] | None) -> list[LakeFile]:
    """The files of ``group`` wholly below the sink's committed offsets, and in each partition only
    those before its first file that is not: a merged range must never span records the sink may
    still write after a restart."""
    if committed is None:
        return list(group)
    stop: dict[int, int] = {}  # partition -> first offset of its earliest file not yet committed
    for f in group:
        for p, first, last in f.ranges:
            if last >= committed.get((table, p), 0):
                stop[p] = min(stop.get(p, first), first)
    return [f for f in group if all(last < committed.get((table, p), 0) and first < stop.get(p, first + 1)
                                    for p, first, last in f.ranges)]


def _exact(run: list[LakeFile], group: list[LakeFile]) -> bool:
    """No other file of the hour has offsets inside the ranges a merge of ``run`` would be named for.

    A merged object must hold every row its name claims, or readers would skip a file whose rows
    it lacks. Runs are built in (partition, offset) order, in which this always holds; the check
    keeps it so if a lake ever holds files that interleave otherwise.
    """
    span = {p: (first, last) for p, first, last in spans(run)}
    keys = {f.key for f in run}
    for g in group:
        if g.key in keys:
            continue
        for p, first, last in g.ranges:
            s = span.get(p)
            if s is not None and first <= s[1] and last >= s[0]:
                return False
    return True


def plan_merges(
    files: list[LakeFile],
    *,
    closed_before: datetime,
    committed: dict[tuple[str, int], int] | None,
    target_bytes: int,
) -> list[Merge]:
    """Runs of live files to merge, per table and closed hour, across partitions.

    ``committed`` maps (table, partition) to the sink's committed offset; files reaching it are
    left alone (None skips that check). Runs follow (partition, offset) order, so the merged ranges
    cover exactly the files merged.
    """
    live, _ = split_superseded(files)
    groups: dict[tuple, list[LakeFile]] = defaultdict(list)
    for f in live:
        groups[f.group].append(f)
    merges = []
    for (table, hour_prefix), group in sorted(groups.items()):
        if hour_start(hour_prefix) + timedelta(hours=1) > closed_before:
            continue
        eligible = sorted(_committed(group, table, committed), key=lambda f: f.ranges[0])
        run: list[LakeFile] = []
        size = 0
        for f in eligible + [None]:
            if f is not None and (not run or size + f.size <= target_bytes):
                run.append(f)
                size += f.size
                continue
            if len(run) >= 2 and _exact(run, group):
                merges.append(Merge(table, hour_prefix, tuple(run)))
            run, size = ([f], f.size) if f is not None else ([], 0)
    return merges


def plan_deletions(files: list[LakeFile], *, now: datetime, grace: timedelta) -> list[LakeFile]:
    """Superseded files whose covering file has existed for longer than ``grace``."""
    _, superseded = split_superseded(files)
    by_key = {f.key: f for f in files}
    return [by_key[key] for key, cover in superseded.items()
            if cover.modified is not None and now - cover.modified >= grace]


def plan_retention(files: list[LakeFile], *, keep_from: date) -> list[LakeFile]:
    """Files in day partitions before ``keep_from``."""
    return [f for f in files if hour_start(f.hour_prefix).date() < keep_from]


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Columns in the schema's order, missing ones as nulls (older objects predate newer columns);
    columns the schema does not know are kept at the end."""
    columns, names = [], []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
        names.append(field.name)
    for name in table.column_names:
        if name not in schema.names:
            columns.append(table[name])
            names.append(name)
    return pa.table(columns, names=names)


# Rows per row group of a merged object: DuckDB's own row group size. DuckDB reads an object's row
# groups in parallel, and a merge holds one row group decoded at a time, not the whole object.
ROW_GROUP_ROWS = 122_880


def run_merge(destination: LakeDestination, merge: Merge, schema: pa.Schema) -> int:
    """Write the merged object; returns its row count. The sources stay until a later deletion pass.

    The sources are fetched once and kept as they are stored (compressed); they are decoded one at
    a time and written out in row groups of :data:`ROW_GROUP_ROWS`. So a merge of a busy hour holds
    its compressed input, its output and about one row group decoded, instead of every source
    decoded at once (several times the target size).
    """
    stored = [destination.get(f.key) for f in merge.sources]
    # The object's columns: the table's, then any others a source has (as `conform` keeps them).
    columns = pa.unify_schemas([conform_schema(pq.read_schema(io.BytesIO(data)), schema) for data in stored],
                               promote_options="permissive")
    out = io.BytesIO()
    rows = 0
    with pq.ParquetWriter(out, columns, compression="zstd") as writer:
        pending: list[pa.Table] = []
        pending_rows = 0
        for data in stored:
            table = conform(pq.read_table(io.BytesIO(data)), columns)
            pending.append(table)
            pending_rows += table.num_rows
            rows += table.num_rows
            while pending_rows >= ROW_GROUP_ROWS:
                chunk = pa.concat_tables(pending)
                writer.write_table(chunk.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                rest = chunk.slice(ROW_GROUP_ROWS)
                pending, pending_rows = [rest], rest.num_rows
        if pending_rows:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
    destination.put(merge.key, out.getvalue())
    return rows


def conform_schema(source: pa.Schema, schema: pa.Schema) -> pa.Schema:
    """The columns :func:`conform` gives a table of ``source``'s columns."""
    return pa.schema(list(schema) + [field for field in source if field.name not in schema.names])


def to_parquet_table(table: pa.Table) -> bytes:
    """A table as a merged object is written: zstd, row groups of :data:`ROW_GROUP_ROWS`."""
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return out.getvalue()


@dataclass
class CompactionReport:
    merged_objects: int = 0
    merged_from: int = 0
    rows: int = 0
    deleted: int = 0


def compact(
    destination: LakeDestination,
    *,
    now: datetime,
    committed: dict[tuple[str, int], int] | None,
    target_bytes: int = 128 * 1024 * 1024,
    grace: timedelta = timedelta(minutes=5),
    tables: list[str] | None = None,
    progress=lambda items, label: items,
) -> CompactionReport:
    """One compaction pass: delete superseded objects past their grace period, then merge closed hours."""
    report = CompactionReport()
    for spec in TABLES:
        if tables is not None and spec.table not in tables:
            continue
        files = parse_files(destination.list_objects(spec.table + "/"))
        for f in progress(plan_deletions(files, now=now, grace=grace), f"{spec.table}: deleting merged objects"):
            destination.delete(f.key)
            report.deleted += 1
        merges = plan_merges(files, closed_before=now, committed=committed, target_bytes=target_bytes)
        for merge in progress(merges, f"{spec.table}: merging"):
            report.rows += run_merge(destination, merge, spec.schema)
            report.merged_objects += 1
            report.merged_from += len(merge.sources)
    return report


def apply_retention(destination: LakeDestination, *, keep_from: date, tables: list[str] | None = None,
                    progress=lambda items, label: items) -> int:
    """Delete every object in day partitions before ``keep_from``; returns how many."""
    deleted = 0
    for spec in TABLES:
        if tables is not None and spec.table not in tables:
            continue
        files = parse_files(destination.list_objects(spec.table + "/"))
        for f in progress(plan_retention(files, keep_from=keep_from), f"{spec.table}: deleting"):
            destination.delete(f.key)
            deleted += 1
    return deleted
