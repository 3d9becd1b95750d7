"""Errors of the ingest layer. ``retriable`` tells the caller whether trying again can help."""

from __future__ import annotations


class IngestError(Exception):
    """Root of the ingest errors; ``status`` is the HTTP answer a client gets for it."""

    retriable = False
    status = 400


class InvalidEvent(IngestError):
    """The client sent something that is not a valid event; the message says why."""


class UnknownWriteKey(IngestError):
    status = 401


class OriginNotAllowed(IngestError):
    status = 403


class RateLimited(IngestError):
    status = 429
    retriable = True

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BrokerUnavailable(IngestError):
    """Kafka did not acknowledge the event in time: it is not durable, the client must retry."""

    retriable = True
    status = 503
