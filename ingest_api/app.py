"""HTTP routes of the collection API: Segment's Tracking API, so existing SDKs work unchanged.

The collection steps live in :mod:`ingest_api.pipeline`. ``POST`` on a collection path is
answered by the lean ASGI front of :mod:`ingest_api.lean`; the FastAPI routes of those paths
call the same pipeline and describe the endpoints in the OpenAPI document. Everything else
(health, metrics, OpenAPI, tracker.js, analytics.js telemetry) is plain FastAPI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clickstream.settings import Settings
from clickstream.sources import SourceRegistry
from ingest_api.body import MAX_EVENT_BYTES, MAX_REQUEST_BYTES, decode_body
from ingest_api.errors import IngestError
from ingest_api.lean import LeanIngestRoutes
from ingest_api.metrics import IngestMetrics
from ingest_api.openapi import install_openapi
from ingest_api.pipeline import (
    BATCH_PATHS, CALL_TYPES, SHORT_NAMES, EventProducer, HttpRequest, IngestPipeline, Reply, error_reply,
    ingest_routes, new_request_id,
)
from ingest_api.tracker import tracker_router

__all__ = ["MAX_EVENT_BYTES", "MAX_REQUEST_BYTES", "create_app"]


def _response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, headers=reply.headers, media_type="application/json")


def create_app(
    settings: Settings,
    producer: EventProducer,
    sources: SourceRegistry | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    clock: Callable[[], float] = time.monotonic,
    lean_front: bool = True,
) -> FastAPI:
    """The API app. ``lean_front=False`` leaves out the ASGI front, so the FastAPI routes serve the
    collection paths too (they call the same pipeline; tests compare the two)."""
    sources = sources or SourceRegistry.from_settings(settings)
    metrics = IngestMetrics()
    pipeline = IngestPipeline(settings, producer, sources, metrics, now=now, clock=clock)
    topics = pipeline.topics

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await producer.stop()

    app = FastAPI(
        title="clickstream ingest API",
        description="Segment-compatible HTTP Tracking API. Authenticate with the write key as HTTP Basic user name "
        "(empty password) or as `writeKey` in the body.",
        lifespan=lifespan,
        # FastAPI asks the OpenTelemetry providers on every request whether to trace it, which cost
        # about 8 us of the 300 us of CPU a /v1/track request takes; off unless asked for.
        telemetry=None if settings.api_opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    # Added first, so it runs inside the CORS middleware: collection answers get the same CORS headers.
    if lean_front:
        app.add_middleware(LeanIngestRoutes, pipeline=pipeline, routes=ingest_routes())
    # Preflights are answered for any origin some source accepts; each request is then
    # checked against its own source's origins.
    origins = sorted({o for s in sources.sources for o in s.allowed_origins})
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if "*" in origins else origins,
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )

    def route(call_type: str | None):
        async def handler(request: Request) -> Response:
            peer = request.client.host if request.client else None
            return _response(await pipeline.handle(HttpRequest(request.headers, peer, request.stream()), call_type))

        return handler

    for name, call_type in CALL_TYPES.items():
        app.add_api_route(f"/v1/{name}", route(call_type), methods=["POST"], summary=f"Send one {name} call")
    for short, call_type in SHORT_NAMES.items():
        app.add_api_route(f"/v1/{short}", route(call_type), methods=["POST"], include_in_schema=False)
    for path in BATCH_PATHS:
        app.add_api_route(path, route(None), methods=["POST"], include_in_schema=path == "/v1/batch",
                          summary="Send up to 500 KB of calls: {\"batch\": [...], \"sentAt\": ...}")

    @app.post("/v1/m", include_in_schema=False)
    async def library_telemetry(request: Request) -> JSONResponse:
        """analytics.js posts counters about itself here (no write key). They are counted and dropped:
        acknowledging them spares every visitor's browser a failed request every 30 s."""
        raw = await request.body()
        try:
            body = decode_body(raw, content_type=request.headers.get("content-type"),
                               content_encoding=request.headers.get("content-encoding"), limit=MAX_EVENT_BYTES)
        except IngestError as exc:
            return _response(error_reply(exc.status, str(exc), new_request_id()))
        series = body.get("series") if isinstance(body, dict) else None
        if isinstance(series, list):
            metrics.client_metrics.inc(len(series))
        return JSONResponse({"success": True})

    install_openapi(app, list(CALL_TYPES), "/v1/batch")

    @app.get("/healthz")
    async def healthz() -> dict:
        """The process is alive and serving."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """The broker is reachable: events sent now can be acknowledged."""
        ready = await producer.ready(topics.raw)
        return JSONResponse({"status": "ready" if ready else "broker unavailable"}, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(tracker_router(settings))
    return app
