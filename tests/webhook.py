"""A webhook receiver for the tests: a real HTTP server on loopback that records what the reactor POSTs."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """Records (Idempotency-Key, body) of every POST; bodies whose signature does not match
    ``secret`` also go to :attr:`unsigned`."""

    def __init__(self, secret: str):
        received = self.received = []
        unsigned = self.unsigned = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                with lock:
                    if self.headers.get("X-Clickstream-Signature") != f"sha256={signed}":
                        unsigned.append(body)
                    received.append((self.headers.get("Idempotency-Key"), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
