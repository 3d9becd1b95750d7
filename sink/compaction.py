"""Compaction and retention of the lake.

The sink writes many small objects (one per partition, hour and flush). Compaction merges
the objects of one table, hour and Kafka partition into objects of about
``target_bytes``, each named for the offset range it covers, the same scheme the sink
uses. Readers (``query.engine.live_files_sql``) skip any object whose range lies inside
another's, so from the moment a merged object exists its small objects are invisible;
they are deleted in a later run, after ``grace`` has passed, so that a query that listed
them before the merge can still read them. No reader ever sees a row twice or misses one.

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

from clickstream.lake import parse_object_key
from sink.destination import LakeDestination, ObjectInfo
from sink.tables import TABLES


@dataclass(frozen=True)
class LakeFile:
    key: str
    table: str
    hour_prefix: str  # e.g. events/dt=2026-11-27/hour=09
    partition: int
    first: int
    last: int
    size: int
    modified: datetime | None

    @property
    def group(self) -> tuple[str, str, int]:
        return self.table, self.hour_prefix, self.partition

    def covers(self, other: LakeFile) -> bool:
        return self.group == other.group and self.first <= other.first and other.last <= self.last


def parse_files(objects: list[ObjectInfo]) -> list[LakeFile]:
    files = []
    for o in objects:
        parsed = parse_object_key(o.key)
        if parsed is not None and "/" in o.key:
            table, partition, first, last = parsed
            files.append(LakeFile(o.key, table, o.key.rsplit("/", 1)[0], partition, first, last, o.size, o.modified))
    return files


def split_superseded(files: list[LakeFile]) -> tuple[list[LakeFile], dict[str, LakeFile]]:
    """Live files, and each superseded file's key mapped to the file that covers it."""
    by_group: dict[tuple, list[LakeFile]] = defaultdict(list)
    for f in files:
        by_group[f.group].append(f)
    live, superseded = [], {}
    for group in by_group.values():
        for f in group:
            cover = next((g for g in group if g is not f and g.covers(f) and (g.first, g.last) != (f.first, f.last)),
                         None)
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


@dataclass(frozen=True)
class Merge:
    table: str
    hour_prefix: str
    partition: int
    sources: tuple[LakeFile, ...]

    @property
    def key(self) -> str:
        first, last = self.sources[0].first, self.sources[-1].last
        return f"{self.hour_prefix}/{self.table}-p{self.partition}-{first}-{last}.parquet"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.sources)


def plan_merges(
    files: list[LakeFile],
    *,
    closed_before: datetime,
    committed: dict[tuple[str, int], int] | None,
    target_bytes: int,
) -> list[Merge]:
    """Runs of adjacent live files to merge, per table, closed hour and partition.

    ``committed`` maps (table, partition) to the sink's committed offset; files reaching it are
    left alone (None skips that check). A run is contiguous in offset order, so the merged range
    covers exactly the files merged.
    """
    live, _ = split_superseded(files)
    groups: dict[tuple, list[LakeFile]] = defaultdict(list)
    for f in live:
        groups[f.group].append(f)
    merges = []
    for (table, hour_prefix, partition), group in sorted(groups.items()):
        if hour_start(hour_prefix) + timedelta(hours=1) > closed_before:
            continue
        group.sort(key=lambda f: f.first)
        if committed is not None:
            limit = committed.get((table, partition), 0)
            eligible = []
            for f in group:
                if f.last >= limit:
                    break  # not yet committed by the sink: neither this nor anything after it
                eligible.append(f)
            group = eligible
        run: list[LakeFile] = []
        for f in group + [None]:
            if f is not None and (not run or sum(x.size for x in run) + f.size <= target_bytes):
                run.append(f)
                continue
            if len(run) >= 2:
                merges.append(Merge(table, hour_prefix, partition, tuple(run)))
            run = [f] if f is not None else []
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


def run_merge(destination: LakeDestination, merge: Merge, schema: pa.Schema) -> int:
    """Write the merged object; returns its row count. The sources stay until a later deletion pass."""
    tables = [conform(pq.read_table(io.BytesIO(destination.get(f.key))), schema) for f in merge.sources]
    merged = pa.concat_tables(tables, promote_options="permissive")
    destination.put(merge.key, to_parquet_table(merged))
    return merged.num_rows


def to_parquet_table(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=1_000_000)
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
