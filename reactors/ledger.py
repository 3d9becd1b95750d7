"""The delivery ledger: which handler already has an outcome for which reaction. No I/O.

It is the in-memory view of the compacted ``reactor-deliveries`` topic: the reactor
applies every record of that topic at start-up, then one record per delivery it makes,
so re-reading ``clickstream.reactions`` from the beginning hands nothing to a handler twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from clickstream.reactions import DeliveryRecord

DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"


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
        """The handlers that have no outcome yet for this reaction."""
        return [h for h in handlers if (h, reaction_id) not in self._outcomes]

    def __len__(self) -> int:
        return len(self._outcomes)
