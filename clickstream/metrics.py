"""The metric contract: one row per metric, dimension and closed window on ``clickstream.metrics``.

Long and narrow on purpose: a new metric or dimension needs no schema change in the
lake, and any engine pivots it with a GROUP BY.

Every closed window of every source yields the rows below (a metric with no events in the
window is left out, except the totals, which are written as 0 so "nothing happened" is a
row and not a gap). Windows are tumbling in event time, ``window_s`` long (60 s by default,
and 10 s for the live view). Rows for one window are final: each (window_start, window_s,
source, metric, dimension) appears once per run of the processor.

=========================  ==============================  ========================================
metric                     dimension                       value
=========================  ==============================  ========================================
``events``                 ``""``                          events in the window
``events``                 ``type=<type>``                 events of a type (page, track, ...)
``events``                 ``event=<name>``                track events by name
``page_views``             ``""`` / ``path=<path>``        page views, in total and by path
``unique_visitors``        ``""``                          distinct visitors (HyperLogLog, ~1% error)
``sessions_started``       ``""``                          sessions whose first event is in the window
``active_sessions``        ``""``                          distinct sessions with an event in the window (HLL)
``sessions_ended``         ``""``                          sessions closed in the window (see below)
``bounces``                ``""``                          ended sessions with one page view or less
``bounce_rate``            ``""``                          bounces / sessions_ended (absent if none)
``conversions``            ``""``                          conversion events (``Order Completed``)
``converted_sessions``     ``""``                          ended sessions with a conversion
``conversion_rate``        ``""``                          converted_sessions / sessions_ended
``revenue``                ``""``                          sum of the conversions' revenue
``experiment_sessions``    ``experiment=<id>|variant=<id>``  ended sessions that saw the variant
``experiment_conversions`` ``experiment=<id>|variant=<id>``  those of them that converted
``bot_events``             ``""``                          events flagged as bots
``bot_share``              ``""``                          bot_events / events
``late_events``            ``""``                          events that arrived after their window
                                                           had closed (counted, kept in the lake,
                                                           not in the window)
=========================  ==============================  ========================================

A session "ends" at its last event plus the session timeout; it is counted in the window
holding that moment, so session metrics of a window settle one timeout after it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

EVENTS = "events"
PAGE_VIEWS = "page_views"
UNIQUE_VISITORS = "unique_visitors"
SESSIONS_STARTED = "sessions_started"
ACTIVE_SESSIONS = "active_sessions"
SESSIONS_ENDED = "sessions_ended"
BOUNCES = "bounces"
BOUNCE_RATE = "bounce_rate"
CONVERSIONS = "conversions"
CONVERTED_SESSIONS = "converted_sessions"
CONVERSION_RATE = "conversion_rate"
REVENUE = "revenue"
EXPERIMENT_SESSIONS = "experiment_sessions"
EXPERIMENT_CONVERSIONS = "experiment_conversions"
BOT_EVENTS = "bot_events"
BOT_SHARE = "bot_share"
LATE_EVENTS = "late_events"

# Written for every closed window, as 0 when nothing happened.
ALWAYS_WRITTEN = (EVENTS, PAGE_VIEWS, UNIQUE_VISITORS, SESSIONS_STARTED, ACTIVE_SESSIONS, SESSIONS_ENDED, LATE_EVENTS)


def dimension(**parts: str) -> str:
    """``dimension(path="/x")`` -> ``"path=/x"``; several parts are joined by ``|`` in the order given."""
    return "|".join(f"{k}={v}" for k, v in parts.items())


def parse_dimension(text: str) -> dict[str, str]:
    """Inverse of :func:`dimension` (values may contain ``=``; they cannot contain ``|``)."""
    if not text:
        return {}
    return dict(part.split("=", 1) for part in text.split("|"))


class MetricRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    window_start: datetime
    window_end: datetime
    window_s: int
    source: str
    metric: str  # one of the names above
    dimension: str = ""  # e.g. "path=/pricing"; empty for the total
    value: float

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def row_id(self) -> str:
        """What identifies the row: one value per window, source, metric and dimension."""
        return f"{self.window_s}|{self.window_start.timestamp():.0f}|{self.source}|{self.metric}|{self.dimension}"

    @classmethod
    def from_bytes(cls, data: bytes) -> MetricRow:
        return cls.model_validate_json(data)
