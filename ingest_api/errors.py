"""Errors of the ingest layer. ``retriable`` tells the caller whether trying again can help."""

from __future__ import annotations


class IngestError(Exception):
    retriable = False


class InvalidEvent(IngestError):
    """The client sent something that is not a valid event; the message says why."""


class UnknownWriteKey(IngestError):
    pass


class BrokerUnavailable(IngestError):
    """Kafka did not acknowledge the event in time: it is not durable, the client must retry."""

    retriable = True
