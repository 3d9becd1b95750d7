"""Rule evaluation: decide from counts whether a reaction fires. No I/O."""

from __future__ import annotations

from datetime import datetime

from clickstream.reactions import Reaction, reaction_id
from stream_processor.windows import WindowCount

PAGE_VIEW_THRESHOLD = "page_views_threshold"


def page_view_threshold(
    subject: str, window: WindowCount, threshold: int, *, now: datetime
) -> Reaction | None:
    """Fire once per window and subject, on the event that makes the count reach ``threshold``."""
    if window.late or not (window.previous < threshold <= window.count):
        return None
    return Reaction(
        reaction_id=reaction_id(PAGE_VIEW_THRESHOLD, subject, window.start),
        rule=PAGE_VIEW_THRESHOLD,
        kind="threshold",
        subject=subject,
        window_start=window.start,
        window_end=window.end,
        value=window.count,
        threshold=threshold,
        message=f"{subject}: {window.count} page views in the window starting {window.start:%Y-%m-%d %H:%M:%S}Z "
        f"(threshold {threshold})",
        created_at=now,
    )
