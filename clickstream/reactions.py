"""The reaction contract: what a fired rule puts on ``clickstream.reactions``."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

# Fixed namespace so that reaction ids are the same in every process and every replay.
_REACTION_NAMESPACE = uuid.UUID("6f1f4d52-7c1e-4a55-9a3e-2f0d8c1b9e10")


def reaction_id(rule: str, subject: str, window_start: datetime) -> str:
    """Deterministic id: a replay of the same input fires the same id, so receivers can dedupe."""
    return str(uuid.uuid5(_REACTION_NAMESPACE, f"{rule}|{subject}|{window_start.isoformat()}"))


class Reaction(BaseModel):
    model_config = ConfigDict(frozen=True)

    reaction_id: str
    rule: str
    kind: str  # e.g. "threshold"
    subject: str  # what the rule fired on, e.g. the page path
    window_start: datetime
    window_end: datetime
    value: float
    threshold: float
    message: str
    created_at: datetime

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reaction:
        return cls.model_validate_json(data)


class DeliveryRecord(BaseModel):
    """One entry of the reactor's delivery ledger (the compacted ``reactor-deliveries`` topic).

    Keyed by :meth:`key`, so compaction keeps the latest state of each (handler, reaction):
    ``started`` (before the first attempt), then ``delivered`` or ``dead_lettered``. A reactor
    reads them back at start-up and never hands a reaction to a handler twice: one left
    ``started`` by a crash is dead-lettered instead, since it may have been delivered.
    """

    model_config = ConfigDict(frozen=True)

    handler: str
    reaction_id: str
    outcome: str  # "started" | "delivered" | "dead_lettered"
    attempts: int
    at: datetime

    def key(self) -> bytes:
        return delivery_key(self.handler, self.reaction_id)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DeliveryRecord:
        return cls.model_validate_json(data)


def delivery_key(handler: str, reaction_id: str) -> bytes:
    return f"{handler}\x1f{reaction_id}".encode()


class DeadLetter(BaseModel):
    """A delivery a handler gave up on (``clickstream.dead-letters``): kept whole, for replay."""

    model_config = ConfigDict(frozen=True)

    handler: str
    reaction: Reaction
    attempts: int
    last_error: str
    failed_at: datetime

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DeadLetter:
        return cls.model_validate_json(data)
