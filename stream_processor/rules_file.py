"""The rules in force: loaded from the rules file at start, reloaded when the file changes.

A file with an error is rejected with its line and reason, logged, and shown on the
processor's ``/health``; the rules in force before stay in force.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stream_processor.rules import RuleFileError, RuleSet, default_rules, load_rules

log = logging.getLogger(__name__)


class RulesHolder:
    def __init__(self, path: Path | None, page_view_threshold: int):
        self.path = path
        self.rules = default_rules(page_view_threshold)
        self.error: str | None = None
        self._seen: tuple[float, int] | None = None
        if path is not None:
            # At start an invalid file is fatal: running without the rules one asked for is worse.
            self.rules = load_rules(path)
            self._seen = self._stamp()

    def current(self) -> RuleSet:
        return self.rules

    def _stamp(self) -> tuple[float, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime, stat.st_size

    def reload_if_changed(self) -> bool:
        """Reload when the file's modification time or size changed; True if new rules are in force."""
        if self.path is None:
            return False
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            rules = load_rules(self.path)
        except RuleFileError as exc:
            self.error = str(exc)
            log.error("rules file rejected, the previous %d rules stay in force: %s", len(self.rules.rules), exc)
            return False
        self.rules, self.error = rules, None
        log.info("rules reloaded from %s: %s", self.path, ", ".join(r.name for r in rules.rules) or "none")
        return True

    def describe(self) -> dict:
        return {"file": str(self.path) if self.path else None, "in_force": [r.name for r in self.rules.rules],
                "error": self.error}
