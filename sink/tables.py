"""Which topic fills which lake table: how to decode a record, its partitioning time and its row."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

import pyarrow as pa
from pydantic import BaseModel
from pydantic_core import to_json

from clickstream import lake
from clickstream.events import Event, EventType, RejectedEvent
from clickstream.metrics import MetricRow
from clickstream.reactions import Reaction
from clickstream.sessions import SessionRecord
from clickstream.topics import Topics
from sink.columnar import JsonBatchDecoder


def _json(value: Any) -> str:
    # pydantic-core's encoder: the same compact JSON as json.dumps(separators=(",", ":")) for the
    # JSON values these columns hold, five times faster (non-ASCII text stays UTF-8, not \u-escaped).
    return to_json(value, fallback=str).decode()


def _whole_record(record: BaseModel) -> str:
    # A record without an id of its own: a retried produce leaves byte-identical copies, while two
    # rejections differ at least in their receive time, so the record itself is its identity.
    return hashlib.blake2b(record.model_dump_json().encode(), digest_size=16).hexdigest()


def model_row(schema: pa.Schema, json_columns: tuple[str, ...] = (), renames: dict[str, str] | None = None):
    """A row builder taking each schema column from the model attribute of that name (or its rename)."""
    renames = renames or {}
    plain = [(name, renames.get(name, name)) for name in schema.names if name not in json_columns]

    def row(record: BaseModel) -> dict:
        out = {column: getattr(record, attribute) for column, attribute in plain}
        out.update({name: _json(getattr(record, name)) for name in json_columns})
        return out

    return row


@dataclass(frozen=True)
class TableSpec:
    table: str
    topic: Callable[[Topics], str]
    decode: Callable[[bytes], BaseModel]
    partition_time: Callable[[Any], datetime]  # which hour folder a record goes to
    row: Callable[[Any], dict]
    schema: pa.Schema
    # What identifies a record, for dropping the copies a retried produce leaves (None: nothing does).
    identity: Callable[[Any], str] | None = None
    # The hot path of a busy topic: the whole flush decoded in one vectorised step (columnar.py),
    # with the columns that hold what ``partition_time`` and ``identity`` give for a model.
    columnar: Callable[[], JsonBatchDecoder] | None = None
    time_column: str | None = None
    id_column: str | None = None


_EVENT_JSON_COLUMNS = ("properties", "traits", "context")


@functools.cache
def _events_decoder() -> JsonBatchDecoder:
    # Event's rules that the columns depend on: required fields, the type's values, and the
    # defaults of its optional non-null fields (our producers write them all; the defaults only
    # cover an explicit null).
    return JsonBatchDecoder(
        lake.EVENTS_SCHEMA,
        json_columns=_EVENT_JSON_COLUMNS,
        required=("event_id", "type", "timestamp", "received_at", "source"),
        choices={"type": get_args(EventType)},
        defaults={"is_bot": "false", **{name: "'{}'" for name in _EVENT_JSON_COLUMNS}},
    )


TABLES: tuple[TableSpec, ...] = (
    TableSpec(lake.EVENTS, lambda t: t.events, Event.from_bytes, lambda e: e.timestamp,
              model_row(lake.EVENTS_SCHEMA, _EVENT_JSON_COLUMNS), lake.EVENTS_SCHEMA,
              lambda e: e.event_id, _events_decoder, "timestamp", "event_id"),
    TableSpec(lake.INVALID_EVENTS, lambda t: t.invalid, RejectedEvent.from_bytes, lambda r: r.received_at,
              model_row(lake.INVALID_EVENTS_SCHEMA, renames={"batch_index": "index"}), lake.INVALID_EVENTS_SCHEMA,
              _whole_record),
    TableSpec(lake.SESSIONS, lambda t: t.sessions, SessionRecord.from_bytes, lambda s: s.session_start,
              model_row(lake.SESSIONS_SCHEMA, ("experiments",)), lake.SESSIONS_SCHEMA, lambda s: s.session_id),
    TableSpec(lake.METRICS, lambda t: t.metrics, MetricRow.from_bytes, lambda m: m.window_start,
              model_row(lake.METRICS_SCHEMA), lake.METRICS_SCHEMA, MetricRow.row_id),
    TableSpec(lake.REACTIONS, lambda t: t.reactions, Reaction.from_bytes, lambda r: r.created_at,
              model_row(lake.REACTIONS_SCHEMA), lake.REACTIONS_SCHEMA, lambda r: r.reaction_id),
)


def by_topic(topics: Topics) -> dict[str, TableSpec]:
    return {spec.topic(topics): spec for spec in TABLES}
