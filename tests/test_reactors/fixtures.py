"""Fixtures of the reactor tests (imported by them: a conftest here would shadow the top one's
``from conftest import ...``): reactions, and a real HTTP receiver on a free loopback port."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clickstream.reactions import Reaction, reaction_id

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def reaction_factory():
    """``make(n, rule=...)``: the reaction of window n (distinct ids for distinct n)."""

    def make(n: int = 0, rule: str = "page_views_threshold", subject: str = "demo:/pricing") -> Reaction:
        start = T0 + timedelta(minutes=n)
        return Reaction(reaction_id=reaction_id(rule, subject, start), rule=rule, kind="threshold",
                        subject=subject, window_start=start, window_end=start + timedelta(minutes=1),
                        value=100 + n, threshold=100, message=f"{subject}: {100 + n} page views", created_at=start)

    return make


@dataclass
class Receiver:
    """What the receiver got: (path, headers, raw body) per request; ``status`` is what it answers."""

    url: str
    requests: list = field(default_factory=list)
    status: int = 204

    def bodies(self, path: str | None = None) -> list[bytes]:
        return [body for p, _, body in self.requests if path is None or p == path]


@pytest.fixture
def webhook_receiver():
    """An http.server in a thread, so it answers both asyncio code and synchronous CLI calls in the test."""
    lock = threading.Lock()

    class Handle(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                receiver.requests.append((self.path, dict(self.headers), body))
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
