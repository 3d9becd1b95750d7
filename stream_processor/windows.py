"""Tumbling event-time windows as plain functions over a per-key ``{window_start: count}`` map."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


def window_start(event_time: datetime, size_s: int) -> datetime:
    """Start of the tumbling window of ``size_s`` seconds (aligned to the epoch) holding ``event_time``."""
    epoch = int(event_time.timestamp())
    return datetime.fromtimestamp(epoch - epoch % size_s, tz=timezone.utc)


@dataclass(frozen=True)
class WindowCount:
    start: datetime
    end: datetime
    previous: int  # the window's count before this event
    count: int  # the window's count including this event
    late: bool  # the window was already dropped: the event was not counted


def count_event(
    counts: dict[str, int], event_time: datetime, *, size_s: int, retain_windows: int
) -> tuple[dict[str, int], WindowCount]:
    """Count one event into its window and drop windows older than ``retain_windows`` behind the newest.

    Keys are window starts in epoch seconds (as text, so the map survives JSON).
    Returns the new map and what happened to the event's window.
    """
    start = window_start(event_time, size_s)
    key = str(int(start.timestamp()))
    end = start + timedelta(seconds=size_s)
    newest = max([int(k) for k in counts] + [int(key)])
    oldest_kept = newest - (retain_windows - 1) * size_s
    if int(key) < oldest_kept:
        # The event's window was closed and pruned: report it as late instead of reviving it.
        return counts, WindowCount(start, end, 0, 0, late=True)
    previous = counts.get(key, 0)
    updated = {k: v for k, v in counts.items() if int(k) >= oldest_kept}
    updated[key] = previous + 1
    return updated, WindowCount(start, end, previous, previous + 1, late=False)
