"""Sources and their write keys.

Every event is sent with a write key (as in Segment) that names its source. The
demo source's key comes from ``CLICKSTREAM_DEMO_WRITE_KEY``; when that is unset a
key is generated once and kept in the state directory, so it stays the same
across restarts of the stack.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from clickstream.settings import Settings


@dataclass(frozen=True)
class Source:
    name: str
    write_key: str


def demo_write_key(settings: Settings) -> str:
    if settings.demo_write_key:
        return settings.demo_write_key
    path = settings.data_dir / "demo_write_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "demo_" + secrets.token_urlsafe(18)
    path.write_text(key + "\n")
    return key


class SourceRegistry:
    """Looks up the source of a write key."""

    def __init__(self, sources: list[Source]):
        self._by_key = {s.write_key: s for s in sources}

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRegistry:
        return cls([Source(settings.demo_source, demo_write_key(settings))])

    def lookup(self, write_key: str | None) -> Source | None:
        return self._by_key.get(write_key) if write_key else None
