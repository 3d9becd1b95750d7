"""Kafka topic names. Every service derives them from the settings' prefix here."""

from __future__ import annotations

from dataclasses import dataclass

from clickstream.settings import Settings


@dataclass(frozen=True)
class Topics:
    prefix: str
    raw: str  # accepted events from the API
    invalid: str  # rejected events with their reasons
    events: str  # deduplicated, sessionized events: what the lake stores
    sessions: str  # closed sessions
    metrics: str  # closed metric windows
    reactions: str  # fired rules, consumed by the reactors
    dead_letters: str  # deliveries a reactor handler gave up on, for `clickstream reactions replay`
    reactor_deliveries: str  # compacted: which (handler, reaction) pairs were delivered or dead-lettered

    @classmethod
    def from_prefix(cls, prefix: str) -> Topics:
        names = [n for n in cls.__dataclass_fields__ if n != "prefix"]
        # Field names use underscores, topic names hyphens: clickstream.dead-letters.
        return cls(prefix=prefix, **{name: f"{prefix}{name.replace('_', '-')}" for name in names})

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls.from_prefix(settings.topic_prefix)

    def all(self) -> list[str]:
        return [getattr(self, name) for name in self.__dataclass_fields__ if name != "prefix"]

    def config(self, topic: str) -> dict[str, str]:
        """Topic-level configuration to create ``topic`` with (the delivery ledger keeps only the last record per key)."""
        return {"cleanup.policy": "compact"} if topic == self.reactor_deliveries else {}

    def group(self, service: str) -> str:
        """Consumer group (and Faust app id) of a service; prefixed so that stacks sharing a broker stay apart."""
        return f"{self.prefix}{service}"
