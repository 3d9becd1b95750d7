"""The session contract: what the stream processor puts on ``clickstream.sessions`` when a session closes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SessionRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    session_id: str
    anonymous_id: str | None = None
    user_id: str | None = None
    source: str
    session_start: datetime
    session_end: datetime
    duration_s: float
    event_count: int
    page_views: int
    entry_path: str | None = None
    exit_path: str | None = None
    is_bounce: bool
    referrer_host: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    device_type: str | None = None
    experiments: dict[str, str] = Field(default_factory=dict)  # experiment id -> variation seen
    converted: bool = False
    revenue: float | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        return cls.model_validate_json(data)
