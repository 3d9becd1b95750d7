"""What a worker sent after its last checkpoint, so that the worker resuming from that checkpoint
does not send it a second time.

The outputs of an input partition go to the same partition number of each output topic (modulo
its partition count), and a checkpoint records, per output, the offset just after the last
output it covers. The worker that takes a partition over reads each output partition from there
to its end: whatever it finds was sent by the work it is about to redo, which comes out the same
(same ids), and is not sent again. A crash at any moment then neither loses nor duplicates an
event, a session, a metric row or a reaction in the lake. Plain code; ``app.py`` does the reading
and sending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from clickstream.metrics import MetricRow

EVENTS, SESSIONS, METRICS, REACTIONS = "events", "sessions", "metrics", "reactions"


# The id of an output as read back from its topic (decoded JSON).
_ID_OF_VALUE: dict[str, Callable[[dict], str]] = {
    EVENTS: lambda v: v["event_id"],
    SESSIONS: lambda v: v["session_id"],
    REACTIONS: lambda v: v["reaction_id"],
    METRICS: lambda v: MetricRow.model_validate(v).row_id(),
}


def output_partition(partition: int, count: int) -> int:
    """The partition of an output topic with ``count`` partitions that input ``partition`` writes to."""
    return partition % count


def split_checkpoint(saved: dict | None) -> tuple[dict | None, dict[str, int] | None]:
    """(state, emitted offsets) of a saved checkpoint; offsets None for one written before they were kept."""
    if saved and set(saved) == {"state", "emitted"}:
        return saved["state"], saved["emitted"]
    return saved, None


def wrap_checkpoint(state: bytes, emitted: bytes) -> bytes:
    """A checkpoint record from the encoded state and the encoded emitted offsets."""
    return b'{"state":' + state + b',"emitted":' + emitted + b"}"


class Resent:
    """Ids of outputs already in the output topics that the work being redone will produce again."""

    def __init__(self) -> None:
        self.ids: dict[str, set[str]] = {}
        self.dropped = 0
        self.sessions: list[dict] = []  # the session records themselves: a restore counts some ends

    def add(self, kind: str, values: Iterable[Any]) -> None:
        values = list(values)
        if kind == SESSIONS:
            self.sessions += values
        ids = {_ID_OF_VALUE[kind](v) for v in values}
        if ids:
            self.ids.setdefault(kind, set()).update(ids)

    def __bool__(self) -> bool:
        return any(self.ids.values())

    def drop(self, kind: str, items: list, id_of: Callable[[Any], str]) -> list:
        """``items`` without those already sent (each is dropped once: it is produced once more at most)."""
        ids = self.ids.get(kind)
        if not ids:
            return items
        kept = []
        for item in items:
            key = id_of(item)
            if key in ids:
                ids.discard(key)
                self.dropped += 1
            else:
                kept.append(item)
        return kept
