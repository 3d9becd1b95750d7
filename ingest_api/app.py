"""HTTP routes of the collection API (Segment Tracking API shape).

Each request goes through named steps: read the body -> authenticate the write
key -> validate -> enrich -> produce. Every step that rejects says why, with the
status a Segment client expects; a 2xx is sent only after Kafka acknowledged.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clickstream.settings import Settings
from clickstream.sources import SourceRegistry
from clickstream.topics import Topics
from ingest_api.auth import write_key_from_authorization
from ingest_api.enrich import build_event, parse_incoming
from ingest_api.errors import BrokerUnavailable, InvalidEvent

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 32 * 1024  # Segment's limit for one call


class EventProducer(Protocol):
    async def send(self, topic: str, key: str, value: bytes) -> None: ...

    async def stop(self) -> None: ...


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "error": message}, status_code=status, headers=headers)


def create_app(
    settings: Settings,
    producer: EventProducer,
    sources: SourceRegistry | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> FastAPI:
    topics = Topics.from_settings(settings)
    sources = sources or SourceRegistry.from_settings(settings)
    # Why requests were turned away, by reason: shown on /health for operators.
    rejections: Counter[str] = Counter()
    accepted = Counter()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await producer.stop()

    app = FastAPI(title="clickstream ingest API", lifespan=lifespan)

    async def ingest(request: Request, event_type: str) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_EVENT_BYTES:
            rejections["too_large"] += 1
            return _error(413, f"event is {len(body)} bytes; the limit is {MAX_EVENT_BYTES} bytes")
        source = sources.lookup(write_key_from_authorization(request.headers.get("authorization")))
        if source is None:
            rejections["unauthorized"] += 1
            return _error(
                401,
                "missing or unknown write key: send it as the HTTP Basic user name",
                {"WWW-Authenticate": 'Basic realm="clickstream"'},
            )
        try:
            decoded = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            rejections["malformed_json"] += 1
            return _error(400, f"malformed JSON: {exc}")
        try:
            incoming = parse_incoming(decoded, event_type)
        except InvalidEvent as exc:
            rejections["invalid"] += 1
            return _error(400, f"invalid event: {exc}")
        event = build_event(incoming, source=source.name, received_at=now())
        try:
            # Keyed by visitor so that one visitor's events stay ordered in one partition.
            await producer.send(topics.raw, event.visitor_id, event.to_bytes())
        except BrokerUnavailable as exc:
            rejections["broker_unavailable"] += 1
            log.warning("event %s not accepted: %s", event.event_id, exc)
            return _error(503, "the event stream is unavailable; retry later", {"Retry-After": "5"})
        accepted[event_type] += 1
        return JSONResponse({"success": True, "event_id": event.event_id})

    @app.post("/v1/track")
    async def track(request: Request) -> JSONResponse:
        return await ingest(request, "track")

    @app.post("/v1/page")
    async def page(request: Request) -> JSONResponse:
        return await ingest(request, "page")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "accepted": dict(accepted), "rejected": dict(rejections)}

    return app
