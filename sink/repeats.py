"""Copies of a record that a retried produce left in a topic, recognised by the record's id.

A producer that resends a batch after losing the broker's answer (the services cannot use
Kafka's idempotent producer against every broker: Tansu refuses it) can leave the same record
twice in a partition, a few records apart. A record whose id appears among the previous
:data:`WINDOW` records of its partition is such a copy and is not stored again.

The decision depends only on the partition's contents, never on when the sink started: after a
restart, the records before the resume point are read again to fill the window
(:func:`window_start`), so a crash does not change what is stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

WINDOW = 10_000  # records of a partition


def window_start(offset: int) -> int:
    """First offset whose id matters for the record at ``offset``."""
    return max(0, offset - WINDOW)


class RecentIds:
    """Ids of one partition's last :data:`WINDOW` records, each with the latest offset it was at."""

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()

    def is_repeat(self, record_id: str, offset: int) -> bool:
        """True if ``record_id`` is among the ids of the :data:`WINDOW` offsets before ``offset``.

        Offsets must come in increasing order (the same one again is not a repeat of itself)."""
        while self._order and self._order[0][0] < offset - WINDOW:
            old_offset, old = self._order.popleft()
            if self._latest.get(old) == old_offset:
                del self._latest[old]
        latest = self._latest.get(record_id)
        if latest is None or latest < offset:
            self._latest[record_id] = offset
            self._order.append((offset, record_id))
        return latest is not None and offset - WINDOW <= latest < offset

    def repeats(self, ids: Sequence[str], offsets: Sequence[int]) -> list[int]:
        """The positions of the records that :meth:`is_repeat`, called on each in turn, finds repeated.

        Each record's id is remembered either way: that, a dict insertion of a string whose hash is
        not yet known, is most of the cost, so a check of the whole batch first would only add to it."""
        is_repeat = self.is_repeat
        return [i for i, (record_id, offset) in enumerate(zip(ids, offsets)) if is_repeat(record_id, offset)]
