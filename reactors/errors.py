"""Errors of the reactor layer. ``retriable`` tells the retry loop whether another attempt can help.

A delivery that fails with a retriable error is tried again with backoff; one that fails
with a non-retriable error (or runs out of attempts or time) becomes a dead letter.
"""

from __future__ import annotations


class ReactorError(Exception):
    """Root of the reactor errors."""

    retriable = False


class RoutesFileError(ReactorError):
    """The routes file cannot be used; the message names the file, the line and the reason."""

    def __init__(self, message: str, *, origin: str = "routes file", line: int | None = None):
        self.origin, self.line, self.reason = origin, line, message
        super().__init__(f"{origin}:{line}: {message}" if line else f"{origin}: {message}")


class DeliveryFailed(ReactorError):
    """A handler could not deliver a reaction; ``retriable`` says whether trying again can help.

    Custom handlers may raise it (``DeliveryFailed("quota exceeded", retriable=False)``) to
    skip the remaining attempts; any other exception they raise counts as a retriable failure.
    """

    retriable = True

    def __init__(self, message: str, *, retriable: bool = True):
        super().__init__(message)
        self.retriable = retriable
