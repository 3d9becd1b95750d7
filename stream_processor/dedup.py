"""Dropping repeated deliveries of an event (SDK retries, a produce retried after a timeout).

Per visitor, the ids seen within a horizon of event time are kept with their event times;
a repeat within the horizon is recognised exactly, and memory stays bounded because ids
older than the horizon (behind the visitor's latest event) are forgotten.
"""

from __future__ import annotations


def check_and_remember(
    seen: dict[str, float], event_id: str, event_time: float, horizon_s: float
) -> tuple[bool, dict[str, float]]:
    """Return (is_repeat, updated ids). Times are epoch seconds; ``seen`` is not modified."""
    if event_id in seen:
        return True, seen
    latest = max([event_time, *seen.values()])
    kept = {k: t for k, t in seen.items() if t >= latest - horizon_s}
    kept[event_id] = event_time
    return False, kept
