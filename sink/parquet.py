"""Format: records -> Parquet bytes, one object per (table, partition, hour of the record's time)."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clickstream.lake import object_key, partition_prefix
from sink.tables import TableSpec


def to_parquet(rows: list[dict], schema: pa.Schema) -> bytes:
    table = pa.Table.from_pylist(rows, schema=schema)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


@dataclass(frozen=True)
class LakeObject:
    key: str
    hour_prefix: str
    first_offset: int
    last_offset: int
    rows: list[dict]
    schema: pa.Schema


def plan_objects(spec: TableSpec, partition: int, records: list[tuple[int, Any]]) -> list[LakeObject]:
    """Group a flush's records by hour; each group becomes one object keyed by its first and last offset."""
    groups: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for offset, record in records:
        groups[partition_prefix(spec.table, spec.partition_time(record))].append((offset, record))
    objects = []
    for prefix, group in groups.items():
        first, last = group[0][0], group[-1][0]
        objects.append(
            LakeObject(
                key=object_key(spec.table, spec.partition_time(group[0][1]), partition, first, last),
                hour_prefix=prefix,
                first_offset=first,
                last_offset=last,
                rows=[spec.row(r) for _, r in group],
                schema=spec.schema,
            )
        )
    return objects


def encode(obj: LakeObject) -> bytes:
    return to_parquet(obj.rows, obj.schema)
