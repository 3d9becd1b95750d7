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


def event_counter_keys(kind: str, name: str | None, path: str | None, is_bot: bool, conversion: bool
                       ) -> tuple[str, ...]:
    """The counters one event adds 1 to: all events and its type; its track name; page views in
    all and of its path; bot events; conversions. (Revenue adds the amount, not 1.) Worked out once
    per event, for all its windows."""
    keys = [counter_key(m.EVENTS), counter_key(m.EVENTS, m.dimension(type=kind))]
    if kind == "track" and name:
        keys.append(counter_key(m.EVENTS, m.dimension(event=name)))
    if kind == "page":
        keys.append(counter_key(m.PAGE_VIEWS))
        if path is not None:
            keys.append(counter_key(m.PAGE_VIEWS, m.dimension(path=path)))
    if is_bot:
        keys.append(counter_key(m.BOT_EVENTS))
    if conversion:
        keys.append(counter_key(m.CONVERSIONS))
    return tuple(keys)


@dataclass
class WindowAggregate:
    """One source's counts in one window of one partition."""

    counts: Counter = field(default_factory=Counter)
    visitors: HyperLogLog = field(default_factory=HyperLogLog)
    # A sketch too: the set of a busy window's session ids would dominate every checkpoint.
    sessions: HyperLogLog = field(default_factory=HyperLogLog)

    def add_counted(self, visitor: tuple[int, int] | None, session: tuple[int, int], keys: tuple[str, ...],
                    revenue: float | None) -> None:
        """Count one event by its counter keys (:func:`event_counter_keys`) and, for a conversion,
        its revenue; ``visitor`` and ``session`` are the ids' sketch positions (:func:`sketch_positions`),
        hashed once for all window sizes."""
        c = self.counts
        for key in keys:
            c[key] += 1
        if revenue is not None:
            c[counter_key(m.REVENUE)] += revenue
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
