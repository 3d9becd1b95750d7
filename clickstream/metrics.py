"""The metric contract: one row per metric, dimension and closed window on ``clickstream.metrics``.

Long and narrow on purpose: a new metric or dimension needs no schema change in the
lake, and any engine pivots it with a GROUP BY.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class MetricRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    window_start: datetime
    window_end: datetime
    window_s: int
    source: str
    metric: str  # e.g. "page_views", "unique_visitors", "bounce_rate"
    dimension: str = ""  # e.g. "path=/pricing"; empty for the total
    value: float

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MetricRow:
        return cls.model_validate_json(data)
