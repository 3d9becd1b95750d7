"""Format: records -> Parquet bytes, one object per (table, partition, hour of the record's time).

A flush is decoded into one Arrow table (:func:`decode_records`): in one vectorised step for a
table that has one (``TableSpec.columnar``), else a model per record. The sink then chooses the
rows to keep (repeats and rows already in the lake go) and :func:`plan` cuts the kept rows into
objects by hour.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from clickstream.lake import HOUR_US, epoch_hour, hour_object_key, hour_prefix
from sink.columnar import NotColumnar
from sink.tables import TableSpec

log = logging.getLogger("clickstream.sink")


def to_parquet(rows: list[dict], schema: pa.Schema) -> bytes:
    return table_to_parquet(pa.Table.from_pylist(rows, schema=schema))


def table_to_parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


@dataclass
class Decoded:
    """A flush's decodable records as one table: row ``i`` is the record at ``offsets[i]``."""

    offsets: list[int]
    table: pa.Table
    hours: list[int]  # epoch hour (lake.epoch_hour) of each row's partitioning time
    ids: list[str] | None  # each row's identity, if the table has one
    undecodable: list[tuple[int, str]] = field(default_factory=list)  # (offset, why)
    vectorised: bool = False


def from_models(spec: TableSpec, records: Sequence[tuple[int, Any]]) -> Decoded:
    """Decoded models (``spec.decode``'s results), each with its offset."""
    return Decoded(
        offsets=[offset for offset, _ in records],
        table=pa.Table.from_pylist([spec.row(r) for _, r in records], schema=spec.schema),
        hours=[epoch_hour(spec.partition_time(r)) for _, r in records],
        ids=[spec.identity(r) for _, r in records] if spec.identity is not None else None,
    )


def decode_records(spec: TableSpec, records: Sequence[tuple[int, bytes]]) -> Decoded:
    """Raw record values with their offsets -> :class:`Decoded`; undecodable records are named, not kept."""
    if spec.columnar is not None and records:
        try:
            table = spec.columnar().decode([value for _, value in records])
        except NotColumnar as exc:
            log.warning("%s: a flush of %d records takes the per-record path: %s", spec.table, len(records), exc)
        else:
            micros = table.column(spec.time_column).cast(pa.int64()).to_numpy()
            return Decoded(
                offsets=[offset for offset, _ in records],
                table=table,
                hours=np.floor_divide(micros, HOUR_US).tolist(),
                ids=table.column(spec.id_column).to_pylist() if spec.id_column else None,
                vectorised=True,
            )
    models, undecodable = [], []
    for offset, value in records:
        try:
            models.append((offset, spec.decode(value)))
        except ValidationError as exc:
            undecodable.append((offset, str(exc)))
    decoded = from_models(spec, models)
    decoded.undecodable = undecodable
    return decoded


@dataclass(frozen=True)
class LakeObject:
    key: str
    hour_prefix: str
    first_offset: int
    last_offset: int
    table: pa.Table

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def plan(spec: TableSpec, partition: int, decoded: Decoded, keep: Sequence[int] | None = None) -> list[LakeObject]:
    """Group the kept rows (all, by default) by hour; each group becomes one object keyed by its
    first and last offset. ``keep`` lists row positions in increasing order."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(decoded.offsets)) if keep is None else keep:
        groups[decoded.hours[i]].append(i)
    objects = []
    for hour, rows in groups.items():
        first, last = decoded.offsets[rows[0]], decoded.offsets[rows[-1]]
        objects.append(
            LakeObject(
                key=hour_object_key(spec.table, hour, partition, first, last),
                hour_prefix=hour_prefix(spec.table, hour),
                first_offset=first,
                last_offset=last,
                table=decoded.table.take(rows) if len(rows) < decoded.table.num_rows else decoded.table,
            )
        )
    return objects


def plan_objects(spec: TableSpec, partition: int, records: list[tuple[int, Any]]) -> list[LakeObject]:
    """The objects that decoded models, each with its offset, are written as."""
    return plan(spec, partition, from_models(spec, records))


def encode(obj: LakeObject) -> bytes:
    return table_to_parquet(obj.table)
