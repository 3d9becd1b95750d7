import json
import logging
import sys

from clickstream.logs import JsonFormatter


def record(msg="%s %s", args=("track", 200), exc_info=None, **extra) -> logging.LogRecord:
    r = logging.LogRecord("clickstream.api", logging.INFO, "", 0, msg, args, exc_info)
    r.__dict__.update(extra)
    return r


def test_a_line_holds_the_message_and_every_extra_field():
    line = JsonFormatter().format(record(request_id="r1", status=200, error=None, peer=object.__new__(object)))
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["msg"]) == ("info", "clickstream.api", "track 200")
    assert entry["request_id"] == "r1" and entry["status"] == 200 and entry["error"] is None
    assert entry["peer"].startswith("<object object")  # what JSON cannot hold is written as text
    assert entry["ts"].endswith("+00:00") and "\n" not in line


def test_exceptions_and_integers_beyond_64_bits_are_kept():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record(exc_info=exc_info, offset=2**70)))
    assert "ValueError: boom" in entry["exc"] and entry["offset"] == 2**70
