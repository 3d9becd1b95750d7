"""Sessionization: one visitor's events belong to one session until a gap of inactivity.

Faust has no session window; this is one, as plain state and pure functions. Times are
epoch seconds (floats), which keeps the state cheap to update and to checkpoint as JSON.

A session is keyed by the visitor's anonymous id when there is one, else by the user id:
a browser's anonymous id survives ``identify``, so a visitor who signs in mid-visit stays
in one session (whose record then carries the user id), instead of being split in two.
"""

from __future__ import annotations

import uuid
from dataclasses import MISSING, dataclass, field, fields

from clickstream.events import Event
from clickstream.sessions import SessionRecord
from stream_processor.windows import utc

_SESSION_NAMESPACE = uuid.UUID("0b6f8a43-4a7c-4f0a-8d36-56f0f4c1c2a1")

EXPERIMENT_VIEWED = "Experiment Viewed"  # Segment's A/B testing spec
# Distinct track names remembered per session (for sequence rules); a bound against runaway names.
MAX_EVENT_NAMES = 64


def session_key(event: Event) -> str:
    """The key one device's session state lives under (see the module docstring); the API uses
    the same key for Kafka, so a device's events arrive in one partition, in order."""
    return event.device_key


def session_id_for(visitor_key: str, first_event_id: str) -> str:
    """Deterministic from the visitor and the session's first event, so a replay gives the same id."""
    return str(uuid.uuid5(_SESSION_NAMESPACE, f"{visitor_key}|{first_event_id}"))



@dataclass
class OpenSession:
    """What is known of a session that has not ended yet."""

    session_id: str
    source: str
    anonymous_id: str | None
    user_id: str | None
    start: float
    end: float  # time of the latest event
    event_count: int = 0
    page_views: int = 0
    entry_path: str | None = None
    entry_time: float | None = None
    exit_path: str | None = None
    exit_time: float | None = None
    # Attribution comes from the session's earliest event, even when it arrives late.
    first_time: float | None = None
    referrer_host: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    device_type: str | None = None
    experiments: dict[str, str] = field(default_factory=dict)
    converted: bool = False
    revenue: float | None = None
    event_names: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)  # session rules that already fired

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def to_state(self) -> tuple:
        """The session as kept in a visitor's state: its values in field order, without the
        trailing ones that hold their defaults (JSON gives it back as a list; both are read).

        A tuple, not a dict: an open session is kept for every active visitor, and a 24-entry
        dict costs about 1.2 KB against under 200 bytes for the tuple (the state of a million
        visitors has to fit in memory). Shallow on purpose: its lists belong to this session.
        """
        values = [getattr(self, name) for name in _FIELDS]
        for i in _CONTAINERS:
            if not values[i]:
                values[i] = None  # most sessions have none: an empty dict or list costs 56-64 bytes
        n = len(values)
        while values[n - 1] is _STORED_DEFAULTS[n - 1]:
            n -= 1
        return tuple(values[:n])

    @classmethod
    def from_state(cls, state: list | dict) -> OpenSession:
        """From :meth:`to_state`'s list, or the dict that checkpoints of earlier versions hold."""
        if isinstance(state, dict):
            return cls(**state)
        values = list(state)
        values += _STORED_DEFAULTS[len(values):]
        for i, empty in _CONTAINERS.items():
            if values[i] is None:
                values[i] = empty()
        return cls(*values)

    def to_record(self) -> SessionRecord:
        return SessionRecord(
            session_id=self.session_id,
            anonymous_id=self.anonymous_id,
            user_id=self.user_id,
            source=self.source,
            session_start=utc(self.start),
            session_end=utc(self.end),
            duration_s=round(self.end - self.start, 6),
            event_count=self.event_count,
            page_views=self.page_views,
            entry_path=self.entry_path,
            exit_path=self.exit_path,
            is_bounce=self.page_views <= 1,
            referrer_host=self.referrer_host,
            utm_source=self.utm_source,
            utm_medium=self.utm_medium,
            utm_campaign=self.utm_campaign,
            device_type=self.device_type,
            experiments=self.experiments,
            converted=self.converted,
            revenue=self.revenue,
        )


_FIELDS = tuple(f.name for f in fields(OpenSession))
_END = _FIELDS.index("end")
# Positions of the fields holding a dict or list (experiments, event names, fired rules), and their type.
_CONTAINERS = {i: f.default_factory for i, f in enumerate(fields(OpenSession)) if f.default_factory is not MISSING}
# What :meth:`OpenSession.to_state` keeps for a field left at its default (a stop marker for the
# fields without one: the required fields are never cut).
_STORED_DEFAULTS = [None if f.default_factory is not MISSING else f.default if f.default is not MISSING else MISSING
                    for f in fields(OpenSession)]


def session_end(state: list | dict) -> float:
    """The time of the latest event of a session kept as :meth:`OpenSession.to_state` keeps it."""
    return state["end"] if isinstance(state, dict) else state[_END]


def belongs_to(session: OpenSession, t: float, timeout_s: float) -> bool:
    """An event belongs to a session if it comes less than ``timeout_s`` before its first or after
    its last event (deliveries arrive out of order). A gap of exactly the timeout starts a new
    session: the visitor was inactive for the whole timeout."""
    return session.start - timeout_s < t < session.end + timeout_s


def open_session(event: Event, t: float) -> OpenSession:
    return OpenSession(
        session_id=session_id_for(session_key(event), event.event_id),
        source=event.source,
        anonymous_id=event.anonymous_id,
        user_id=event.user_id,
        start=t,
        end=t,
    )


def add_event(session: OpenSession, event: Event, t: float, conversion_event: str) -> None:
    """Fold one event (already known to belong to ``session``) into it."""
    session.start = min(session.start, t)
    session.end = max(session.end, t)
    session.event_count += 1
    if event.user_id:
        session.user_id = event.user_id
    if session.anonymous_id is None and event.anonymous_id:
        session.anonymous_id = event.anonymous_id
    if event.is_page_view:
        session.page_views += 1
        if event.path is not None:
            if session.entry_time is None or t < session.entry_time:
                session.entry_path, session.entry_time = event.path, t
            if session.exit_time is None or t >= session.exit_time:
                session.exit_path, session.exit_time = event.path, t
    if session.first_time is None or t < session.first_time:
        session.first_time = t
        session.referrer_host = event.referrer_host
        session.utm_source, session.utm_medium = event.utm_source, event.utm_medium
        session.utm_campaign = event.utm_campaign
        session.device_type = event.device_type
    if event.type == "track" and event.event:
        if event.event not in session.event_names and len(session.event_names) < MAX_EVENT_NAMES:
            session.event_names.append(event.event)
        if event.event == EXPERIMENT_VIEWED:
            experiment = _first(event.properties, "experiment_id", "experimentId", "experiment_name", "experimentName")
            variation = _first(event.properties, "variation_name", "variationName", "variation_id", "variationId")
            if experiment is not None and variation is not None:
                session.experiments.setdefault(str(experiment), str(variation))
        if event.event == conversion_event:
            session.converted = True
            revenue = revenue_of(event)
            if revenue is not None:
                session.revenue = (session.revenue or 0.0) + revenue


def revenue_of(event: Event) -> float | None:
    """Revenue of a conversion event, as Segment's e-commerce spec places it (``revenue``, else ``total``)."""
    for name in ("revenue", "total"):
        value = event.properties.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _first(properties: dict, *names: str):
    """The first of these properties that is set. Segment's A/B testing spec names them in snake
    case; older SDKs and docs use camel case. Experiments go by id, variations by name (as the
    query layer's experiment analysis does)."""
    for name in names:
        value = properties.get(name)
        if value is not None:
            return value
    return None
