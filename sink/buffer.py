"""Buffering policy: when a partition's buffered records are due to be written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class PartitionBuffer(Generic[T]):
    """Records of one topic-partition awaiting upload, in offset order."""

    opened_at: float  # monotonic seconds when the first record arrived
    records: list[tuple[int, T]] = field(default_factory=list)
    size_bytes: int = 0

    def extend(self, records: list[tuple[int, T]], size: int) -> None:
        self.records.extend(records)
        self.size_bytes += size

    @property
    def last_offset(self) -> int:
        return self.records[-1][0]

    def is_due(self, now: float, *, max_age_s: float, max_bytes: int) -> bool:
        """Flush by size or age, whichever comes first."""
        return bool(self.records) and (self.size_bytes >= max_bytes or now - self.opened_at >= max_age_s)
