"""The event contract, layered by use.

* :class:`IncomingEvent` is what the HTTP API accepts: one call of the Segment
  Tracking API (camelCase names, unknown fields tolerated as Segment does).
* :class:`Event` is what travels on Kafka (``clickstream.raw`` and, with its
  ``session_id`` set, ``clickstream.events``): snake_case, enriched, UTC times.
* What lands in Parquet is :data:`clickstream.lake.EVENTS_SCHEMA`, built from
  :class:`Event` by the sink.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

EventType = Literal["track", "page", "screen", "identify", "group", "alias"]


def _iso_text(value: Any) -> Any:
    # Segment's timestamps are ISO 8601 strings; a bare number is ambiguous (seconds? ms?) and refused.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_text)]


class IncomingEvent(BaseModel):
    """One Segment Tracking API call as a client sends it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, str_max_length=8192)

    type: EventType
    message_id: str | None = Field(None, alias="messageId", max_length=200)
    anonymous_id: str | None = Field(None, alias="anonymousId", max_length=200)
    user_id: str | None = Field(None, alias="userId", max_length=200)
    event: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)
    group_id: str | None = Field(None, alias="groupId", max_length=200)
    previous_id: str | None = Field(None, alias="previousId", max_length=200)
    timestamp: IsoDatetime | None = Field(None, validation_alias=AliasChoices("timestamp", "originalTimestamp"))
    sent_at: IsoDatetime | None = Field(None, alias="sentAt")
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    # Browsers send the write key in the body; it authenticates the call and is not stored.
    write_key: str | None = Field(None, alias="writeKey", exclude=True)

    @model_validator(mode="after")
    def _required_by_type(self) -> IncomingEvent:
        # Segment rejects calls that name no one: every event must belong to a visitor.
        if not (self.user_id or self.anonymous_id):
            raise ValueError("either userId or anonymousId is required")
        if self.type == "track" and not self.event:
            raise ValueError("a track call requires 'event' (the name of the action)")
        if self.type == "group" and not self.group_id:
            raise ValueError("a group call requires 'groupId'")
        if self.type == "alias" and not (self.previous_id and self.user_id):
            raise ValueError("an alias call requires 'previousId' and 'userId'")
        return self


class Event(BaseModel):
    """An accepted, enriched event as it travels on Kafka."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: EventType
    event: str | None = None  # the track name, or the page name for pages
    anonymous_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    timestamp: datetime  # event time, UTC, corrected for client clock skew
    received_at: datetime
    sent_at: datetime | None = None
    source: str
    url: str | None = None
    host: str | None = None
    path: str | None = None
    query: str | None = None
    referrer: str | None = None
    referrer_host: str | None = None
    title: str | None = None
    browser: str | None = None
    os: str | None = None
    device_type: str | None = None  # desktop, mobile, tablet, bot or other
    is_bot: bool = False
    ip: str | None = None  # anonymized unless configured otherwise
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    @property
    def visitor_id(self) -> str:
        """Who the event is from, for counting visitors: the user id, else the anonymous id."""
        return self.user_id or self.anonymous_id or ""

    @property
    def device_key(self) -> str:
        """The Kafka key, and the key sessions are kept under: the anonymous id, else the user id.

        A browser's anonymous id outlives ``identify``, so keying by it keeps a device's events in
        one partition, in order, before and after the visitor signs in; keying by the user id
        would send the events after sign-in to another partition and cut the session in two.
        """
        return self.anonymous_id or self.user_id or ""

    @property
    def is_page_view(self) -> bool:
        return self.type == "page"

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Event:
        return cls.model_validate_json(data)


class RejectedEvent(BaseModel):
    """A call the API refused, as it travels on ``clickstream.invalid``: enough to inspect and replay it."""

    model_config = ConfigDict(frozen=True)

    received_at: datetime
    source: str
    reason: str
    payload: str  # the call as JSON text, cut to PAYLOAD_LIMIT characters
    endpoint: str
    index: int | None = None  # position in a batch
    request_id: str | None = None

    PAYLOAD_LIMIT: ClassVar[int] = 32 * 1024

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RejectedEvent:
        return cls.model_validate_json(data)
