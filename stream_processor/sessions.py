"""Sessionization: one visitor's events belong to one session until a gap of inactivity.

Faust has no session window; this is one, as plain state and a pure function.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

_SESSION_NAMESPACE = uuid.UUID("0b6f8a43-4a7c-4f0a-8d36-56f0f4c1c2a1")


def session_id_for(visitor_id: str, first_event_id: str) -> str:
    """Deterministic from the visitor and the session's first event, so a replay gives the same id."""
    return str(uuid.uuid5(_SESSION_NAMESPACE, f"{visitor_id}|{first_event_id}"))


@dataclass(frozen=True)
class SessionState:
    session_id: str
    started_at: datetime
    last_seen: datetime
    event_count: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["last_seen"] = self.last_seen.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> SessionState | None:
        if not d:
            return None
        return cls(
            session_id=d["session_id"],
            started_at=datetime.fromisoformat(d["started_at"]),
            last_seen=datetime.fromisoformat(d["last_seen"]),
            event_count=int(d["event_count"]),
        )


def assign_session(
    state: SessionState | None,
    *,
    visitor_id: str,
    event_id: str,
    event_time: datetime,
    timeout: timedelta,
) -> SessionState:
    """The session an event belongs to, given the visitor's current session (or None).

    An event within ``timeout`` of the current session's span (before its start or
    after its last event: deliveries arrive out of order) extends it; otherwise it
    opens a new session whose id derives from this event.
    """
    if state is not None and state.started_at - timeout <= event_time <= state.last_seen + timeout:
        return SessionState(
            session_id=state.session_id,
            started_at=min(state.started_at, event_time),
            last_seen=max(state.last_seen, event_time),
            event_count=state.event_count + 1,
        )
    return SessionState(
        session_id=session_id_for(visitor_id, event_id),
        started_at=event_time,
        last_seen=event_time,
        event_count=1,
    )
