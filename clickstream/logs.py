"""Logging set-up shared by the services: plain text for people, JSON lines for machines."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import orjson

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            # orjson: the API writes a line per request, and json.dumps was a third of its cost.
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which json handles
            return json.dumps(entry, default=str)


def configure_logging(level: str, *, json_lines: bool) -> None:
    """Log to stderr, one line a record, at ``level`` and up.

    Neither format shows the caller's file and line, thread or process, so records are made
    without them (the switches of the logging HOWTO's "Optimization" section): the API logs
    one line per request, and looking up the caller's frame was a third of that line's cost.
    """
    logging._srcfile = None  # no findCaller(): records carry no pathname, lineno or funcName
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
