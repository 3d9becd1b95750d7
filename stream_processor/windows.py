"""Tumbling event-time windows: window maths and one window's aggregate, as plain code.

A window ``[start, start + size)`` of one partition closes when the partition's watermark
(its latest event time minus the allowed lateness) reaches the window's end. An event whose
window has already closed is late: it is counted as such, never added to a closed window.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from clickstream import metrics as m
from stream_processor.hll import HyperLogLog, position

# Separates metric and dimension in a counter key (a character neither can hold in practice).
_SEP = "\x1f"


def utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC datetime (the contracts' timestamps)."""
    return datetime.fromtimestamp(t, tz=timezone.utc)


def window_start(t: float, size_s: int) -> int:
    """Start (epoch seconds) of the tumbling window of ``size_s`` seconds, aligned to the epoch, holding ``t``."""
    second = int(t // 1)
    return second - second % size_s


def window_starts(t: float, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(size, start)`` of the window holding ``t`` for each window size."""
    return [(size, window_start(t, size)) for size in sizes]


def closes_through(watermark: float, size_s: int) -> int:
    """Every window of ``size_s`` whose end is at or before this time is closed at ``watermark``."""
    return window_start(watermark, size_s)


def counter_key(metric: str, dimension: str = "") -> str:
    return f"{metric}{_SEP}{dimension}"


def split_counter_key(key: str) -> tuple[str, str]:
    metric, dimension = key.split(_SEP, 1)
    return metric, dimension


def sketch_positions(visitor_id: str, session_id: str) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    return (position(visitor_id) if visitor_id else None), position(session_id)


_EVENTS, _PAGE_VIEWS, _BOT_EVENTS, _CONVERSIONS, _REVENUE = (
    counter_key(name) for name in (m.EVENTS, m.PAGE_VIEWS, m.BOT_EVENTS, m.CONVERSIONS, m.REVENUE))
# Counter keys by dimension value: the same few types, names and paths recur all the time.
_TYPE_KEYS: dict[str, str] = {}
_NAME_KEYS: dict[str, str] = {}
_PATH_KEYS: dict[str, str] = {}
_CACHED_KEYS = 10_000  # per dictionary; beyond that, keys are built each time


def _dimension_key(cache: dict[str, str], metric: str, part: str, value: str) -> str:
    key = cache.get(value)
    if key is None:
        key = counter_key(metric, m.dimension(**{part: value}))
        if len(cache) < _CACHED_KEYS:
            cache[value] = key
    return key


def event_counter_keys(kind: str, name: str | None, path: str | None, is_bot: bool, conversion: bool
                       ) -> tuple[str, ...]:
    """The counters one event adds 1 to: all events and its type; its track name; page views in
    all and of its path; bot events; conversions. (Revenue adds the amount, not 1.)"""
    keys = [_EVENTS, _dimension_key(_TYPE_KEYS, m.EVENTS, "type", kind)]
    if kind == "track" and name:
        keys.append(_dimension_key(_NAME_KEYS, m.EVENTS, "event", name))
    if kind == "page":
        keys.append(_PAGE_VIEWS)
        if path is not None:
            keys.append(_dimension_key(_PATH_KEYS, m.PAGE_VIEWS, "path", path))
    if is_bot:
        keys.append(_BOT_EVENTS)
    if conversion:
        keys.append(_CONVERSIONS)
    return tuple(keys)


@dataclass
class WindowAggregate:
    """One source's counts in one window of one partition."""

    counts: Counter = field(default_factory=Counter)
    visitors: HyperLogLog = field(default_factory=HyperLogLog)
    # A sketch too: the set of a busy window's session ids would dominate every checkpoint.
    sessions: HyperLogLog = field(default_factory=HyperLogLog)

    def add_event(self, visitor: tuple[int, int] | None, session: tuple[int, int], kind: str, name: str | None,
                  path: str | None, is_bot: bool, conversion: bool, revenue: float | None) -> None:
        """Count one event; ``visitor`` and ``session`` are the ids' sketch positions
        (:func:`sketch_positions`), hashed once for all window sizes."""
        self.add_counted(visitor, session, event_counter_keys(kind, name, path, is_bot, conversion), revenue)

    def add_counted(self, visitor: tuple[int, int] | None, session: tuple[int, int], keys: tuple[str, ...],
                    revenue: float | None) -> None:
        """:meth:`add_event` with the event's counter keys (:func:`event_counter_keys`) worked out
        once for all window sizes."""
        c = self.counts
        for key in keys:
            c[key] += 1
        if revenue is not None:
            c[_REVENUE] += revenue
        if visitor is not None:
            self.visitors.add_position(visitor)
        self.sessions.add_position(session)

    def add_session_end(self, page_views: int, converted: bool, experiments: dict[str, str]) -> None:
        c = self.counts
        c[counter_key(m.SESSIONS_ENDED)] += 1
        if page_views <= 1:
            c[counter_key(m.BOUNCES)] += 1
        if converted:
            c[counter_key(m.CONVERTED_SESSIONS)] += 1
        for experiment, variant in experiments.items():
            dim = m.dimension(experiment=experiment, variant=variant)
            c[counter_key(m.EXPERIMENT_SESSIONS, dim)] += 1
            if converted:
                c[counter_key(m.EXPERIMENT_CONVERSIONS, dim)] += 1

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "hll": self.visitors.to_text(), "sessions": self.sessions.to_text()}

    @classmethod
    def from_dict(cls, d: dict) -> WindowAggregate:
        return cls(Counter(d["counts"]), HyperLogLog.from_text(d["hll"]), HyperLogLog.from_text(d["sessions"]))

    def partial(self) -> dict:
        """What the partition sends to the merger when the window closes: active sessions are
        counted here (a session lives in one partition), distinct visitors travel as a sketch."""
        counts = dict(self.counts)
        counts[counter_key(m.ACTIVE_SESSIONS)] = self.sessions.count()
        return {"counts": counts, "hll": self.visitors.to_text()}
