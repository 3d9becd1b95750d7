"""Format: events -> Parquet bytes, one object per (partition, event-time hour)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from clickstream.events import Event
from clickstream.lake import EVENTS, EVENTS_SCHEMA, object_key, partition_prefix


_JSON_COLUMNS = ("properties", "traits", "context")
_EVENT_COLUMNS = [name for name in EVENTS_SCHEMA.names if name not in _JSON_COLUMNS]


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def event_row(event: Event) -> dict:
    """One lake row: the schema's columns by name, nested objects as JSON text."""
    row = {name: getattr(event, name) for name in _EVENT_COLUMNS}
    row.update({name: _json(getattr(event, name)) for name in _JSON_COLUMNS})
    return row


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


def plan_objects(partition: int, records: list[tuple[int, Event]]) -> list[LakeObject]:
    """Group a flush's records by event-time hour; each group becomes one object keyed by its offsets."""
    groups: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for offset, event in records:
        groups[partition_prefix(EVENTS, event.timestamp)].append((offset, event))
    objects = []
    for prefix, group in groups.items():
        first, last = group[0][0], group[-1][0]
        objects.append(
            LakeObject(
                key=object_key(EVENTS, group[0][1].timestamp, partition, first, last),
                hour_prefix=prefix,
                first_offset=first,
                last_offset=last,
                rows=[event_row(e) for _, e in group],
            )
        )
    return objects


def encode(obj: LakeObject) -> bytes:
    return to_parquet(obj.rows, EVENTS_SCHEMA)
