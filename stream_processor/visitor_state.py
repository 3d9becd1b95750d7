"""One visitor's state as a partition processor keeps it: what must outlive a single event.

A list ``[partition, seen, session]``, not a dict: the state of every visitor of the last day is
held in memory (a million of them have to fit in well under a gigabyte), and a three-entry dict
costs 184 bytes against 80 for the list.

- ``partition``: the input partition the visitor belongs to;
- ``seen``: the event ids delivered within the dedup horizon, each with its event time, the
  offset it was read at (a record read again after a crash is told apart from an SDK's repeat
  delivery by it) and its session id. Most visitors have a single event, so one id is kept as a
  flat list ``[id, time, offset, session id]``; from the second on, a dict ``id -> [time, offset,
  session id]`` (a one-entry dict and its entry cost 264 bytes against 88 for the flat list).
  The session id is None while the event is held (see ``PartitionProcessor._apply``);
- ``session``: the open session (:meth:`OpenSession.to_state`), or None.

The states are also what the ``processor.visitors`` topic holds (as JSON), so states written by
earlier versions (a dict with "p", "seen" and "session", offsets as "topic:offset") are still read.
"""

from __future__ import annotations

from typing import Any

PARTITION, SEEN, SESSION = 0, 1, 2


def new(partition: int) -> list:
    return [partition, None, None]


def from_stored(value: Any) -> list:
    """A state as read back from the state topic, in the current form."""
    if not isinstance(value, dict):
        return value
    state = new(value["p"])
    state[SESSION] = value.get("session")
    for event_id, (t, ref, session_id) in value["seen"].items():
        _add(state, event_id, [t, _offset(ref), session_id])
    return state


def _offset(ref: int | str) -> int:
    """An offset; earlier versions kept "topic:offset" (a processor reads one input topic)."""
    return ref if isinstance(ref, int) else int(ref.rsplit(":", 1)[1])


def seen_entry(state: list, event_id: str) -> list | None:
    """``[time, offset, session id]`` of a delivered id, or None."""
    seen = state[SEEN]
    if seen is None:
        return None
    if isinstance(seen, dict):
        return seen.get(event_id)
    return seen[1:] if seen[0] == event_id else None


def session_ids(state: list) -> set[str]:
    """The session ids of the delivered ids (None for a held event)."""
    seen = state[SEEN]
    if seen is None:
        return set()
    if isinstance(seen, dict):
        return {entry[2] for entry in seen.values()}
    return {seen[3]}


def latest_seen(state: list) -> float | None:
    """Event time of the newest delivered id."""
    seen = state[SEEN]
    if seen is None:
        return None
    if isinstance(seen, dict):
        return max((entry[0] for entry in seen.values()), default=None)
    return seen[1]


def remember(state: list, event_id: str, t: float, offset: int, session_id: str, horizon_s: float) -> None:
    """Add a delivered id; past 64 ids, those a horizon behind the newest are forgotten."""
    seen = state[SEEN]
    if isinstance(seen, dict) and len(seen) > 64:
        cut = max(t, latest_seen(state)) - horizon_s
        state[SEEN] = {k: v for k, v in seen.items() if v[0] >= cut}
    _add(state, event_id, [t, offset, session_id])


def _add(state: list, event_id: str, entry: list) -> None:
    seen = state[SEEN]
    if seen is None:
        state[SEEN] = [event_id, entry[0], entry[1], entry[2]]  # a literal: [x, *y] over-allocates
    elif isinstance(seen, dict):
        seen[event_id] = entry
    else:
        state[SEEN] = {seen[0]: seen[1:], event_id: entry}
