"""The lean ASGI front of the collection paths: it answers as the FastAPI routes do (both call the
one pipeline), lets everything else through to FastAPI, and keeps the CORS and error behaviour."""

import asyncio
import base64
import gzip
import json
import logging

import pytest
from fastapi.testclient import TestClient

from clickstream.settings import Settings
from clickstream.sources import Source, SourceRegistry
from ingest_api.app import create_app
from ingest_api.lean import LeanIngestRoutes, scope_headers
from ingest_api.pipeline import ingest_routes

KEY = "wk_test_lean"
TRACK = {"anonymousId": "a1", "event": "Clicked", "messageId": "m-1", "timestamp": "2026-01-01T00:00:00Z",
         "context": {"page": {"url": "https://shop.example/p?utm_source=gh"}}}


class RecordingProducer:
    def __init__(self):
        self.records = []

    async def send_many(self, records):
        self.records.extend(records)

    async def ready(self, topic):
        return True

    async def stop(self):
        pass


def client(lean_front=True, sources=None):
    producer = RecordingProducer()
    settings = Settings(_env_file=None, demo_write_key=KEY)
    app = create_app(settings, producer, sources=sources, lean_front=lean_front)
    return TestClient(app), producer


REQUESTS = [
    ("/v1/track", {"json": TRACK}),
    ("/v1/t", {"json": TRACK}),
    ("/v1/page", {"json": {"anonymousId": "a1", "name": "Home"}}),
    ("/v1/batch", {"json": {"batch": [{**TRACK, "type": "track"}, {"type": "nope"}], "sentAt": "2026-01-01T00:00:01Z"}}),
    ("/v1/import", {"json": {"batch": [{"type": "identify", "userId": "u1", "messageId": "m-2"}]}}),
    ("/v1/track", {"content": gzip.compress(json.dumps(TRACK).encode()), "headers": {"Content-Encoding": "gzip"}}),
    ("/v1/track", {"content": b"{not json"}),
    ("/v1/track", {"content": b"{}", "headers": {"Content-Type": "application/xml"}}),
    ("/v1/track", {"json": {"anonymousId": "a1"}}),
    ("/v1/batch", {"json": {"batch": []}}),
]


@pytest.mark.parametrize("path,kwargs", REQUESTS)
def test_lean_front_answers_as_the_fastapi_routes(path, kwargs):
    answers, produced = [], []
    for lean in (True, False):
        c, producer = client(lean)
        response = c.post(path, auth=(KEY, ""), headers={"X-Request-ID": "r-1", **kwargs.get("headers", {})},
                          **{k: v for k, v in kwargs.items() if k != "headers"})
        answers.append((response.status_code, response.content, response.headers["content-type"],
                        response.headers["x-request-id"], response.headers.get("retry-after")))
        # Records differ only in their received_at and generated ids; compare topics, keys and reasons.
        produced.append([(topic, key, json.loads(value).get("reason")) for topic, key, value in producer.records])
    assert answers[0][0] == answers[1][0]
    body = [json.loads(a[1]) for a in answers]
    if "event_id" in body[0] and not body[0]["event_id"].startswith("m-"):
        body[0]["event_id"] = body[1]["event_id"] = "generated"
    assert body[0] == body[1]
    assert answers[0][2:] == answers[1][2:] == ("application/json", "r-1", None)
    assert produced[0] == produced[1]


def test_lean_front_handles_only_post_on_collection_paths():
    c, _ = client()
    assert c.get("/v1/track").status_code == 405  # FastAPI's answer to the wrong method
    assert c.get("/healthz").json() == {"status": "ok"}
    assert "/v1/track" in c.get("/openapi.json").json()["paths"]
    assert c.post("/v1/m", json={"series": [1, 2]}).json() == {"success": True}


def test_collection_answers_carry_cors_headers_and_origins_are_checked_per_source():
    web = Source("web", "wk_web_12345", allowed_origins=("https://shop.example",))
    c, _ = client(sources=SourceRegistry([web]))
    preflight = c.options("/v1/track", headers={"Origin": "https://shop.example",
                                                "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    allowed = c.post("/v1/track", json=TRACK, auth=(web.write_key, ""), headers={"Origin": "https://shop.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "X-Request-ID" in allowed.headers["access-control-expose-headers"]
    other = c.post("/v1/track", json=TRACK, auth=(web.write_key, ""), headers={"Origin": "https://evil.example"})
    assert other.status_code == 403


def test_repeated_headers_keep_the_first_value_and_names_are_lower_case():
    scope = {"headers": [(b"X-Request-ID", b"first"), (b"x-request-id", b"second"), (b"user-agent", b"ua")]}
    assert scope_headers(scope) == {"x-request-id": "first", "user-agent": "ua"}


def asgi_post(app, path, chunks, root_path=""):
    """Drive an ASGI app with one POST whose body comes in ``chunks``; a None chunk is a disconnect."""
    sent, messages = [], [
        {"type": "http.disconnect"} if chunk is None else
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": root_path + path, "root_path": root_path,
             "headers": [(b"authorization", b"Basic " + base64.b64encode(f"{KEY}:".encode()))],
             "client": ("203.0.113.9", 5000)}
    asyncio.run(app(scope, receive, send))
    return sent


def lean_app():
    producer = RecordingProducer()
    fastapi_app = create_app(Settings(_env_file=None, demo_write_key=KEY), producer)
    pipeline = next(m.kwargs["pipeline"] for m in fastapi_app.user_middleware if m.cls is LeanIngestRoutes)

    async def fallthrough(scope, receive, send):
        raise AssertionError(f"{scope['path']} reached the app behind the front")

    return LeanIngestRoutes(fallthrough, pipeline, ingest_routes()), producer


def test_a_body_in_chunks_is_joined_and_the_peer_address_is_anonymized():
    app, producer = lean_app()
    body = json.dumps(TRACK).encode()
    sent = asgi_post(app, "/v1/track", [body[:10], body[10:30], body[30:]], root_path="/api")
    assert sent[0]["status"] == 200
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["event_id"] == "m-1"
    [(_, key, value)] = producer.records
    assert key == "a1" and json.loads(value)["ip"] == "203.0.113.0"


def test_a_client_gone_before_its_body_is_not_answered_and_is_logged(caplog):
    app, producer = lean_app()
    with caplog.at_level(logging.WARNING, logger="clickstream.api"):
        sent = asgi_post(app, "/v1/track", [b'{"anonymousId"', None])
    assert sent == [] and producer.records == []
    assert "disconnected" in caplog.text


@pytest.mark.parametrize("payload", [
    {"success": True, "request_id": "r-1", "event_id": "é ✓ \n \u2028 \x01"},
    {"success": False, "rejected": [{"index": 3, "reason": 'a "quoted" \\ reason'}], "accepted": 2 ** 63},
])
def test_answers_are_encoded_as_starlette_encodes_them(payload):
    from starlette.responses import JSONResponse

    from ingest_api.pipeline import json_bytes
    assert json_bytes(payload) == JSONResponse(payload).body


def test_an_echoed_lone_surrogate_does_not_break_the_answer():
    from ingest_api.pipeline import json_bytes
    assert json.loads(json_bytes({"event_id": "\ud800"})) == {"event_id": "\ud800"}  # escaped, as JSON allows
