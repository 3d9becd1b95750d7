"""The delivery ledger: which handler already has an outcome for which reaction. No I/O.

It is the in-memory view of the compacted ``reactor-deliveries`` topic: the reactor
applies every record of that topic at start-up, then the records of each delivery it makes
(``started`` before the first attempt, then ``delivered`` or ``dead_lettered``), so
re-reading ``clickstream.reactions`` from the beginning hands nothing to a handler twice.
A delivery left ``started`` was under way when the reactor stopped: whether the handler got
it is unknown, so it is not made again but dead-lettered, for a person to replay.
"""

from __future__ import annotations

from collections.abc import Iterable

from clickstream.reactions import DeliveryRecord

DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"
STARTED = "started"  # the delivery was under way: no outcome yet


class DeliveryLedger:
    def __init__(self, records: Iterable[DeliveryRecord] = ()):
        self._outcomes: dict[tuple[str, str], str] = {}
        for record in records:
            self.apply(record)

    def apply(self, record: DeliveryRecord) -> None:
        """Later records win, as after the topic's compaction."""
        self._outcomes[(record.handler, record.reaction_id)] = record.outcome

    def outcome(self, handler: str, reaction_id: str) -> str | None:
        return self._outcomes.get((handler, reaction_id))

    def pending(self, handlers: Iterable[str], reaction_id: str) -> list[str]:
        """The handlers that have not been handed this reaction yet."""
        return [h for h in handlers if (h, reaction_id) not in self._outcomes]

    def in_doubt(self, handlers: Iterable[str], reaction_id: str) -> list[str]:
        """The handlers whose delivery of this reaction started and never recorded an outcome."""
        return [h for h in handlers if self._outcomes.get((h, reaction_id)) == STARTED]

    def __len__(self) -> int:
        return len(self._outcomes)
