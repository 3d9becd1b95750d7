"""HTTP routes of the collection API: Segment's Tracking API, so existing SDKs work unchanged.

A request goes through named steps: read the body -> authenticate the write key ->
check origin and rate -> split into calls -> validate each -> enrich -> produce.
Each rejection says why; in a batch, valid calls are kept and invalid ones are
listed by index and kept on ``clickstream.invalid``. A 2xx is sent only after
Kafka acknowledged every record of the request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clickstream.events import Event, RejectedEvent
from clickstream.settings import Settings
from clickstream.sources import Source, SourceRegistry
from clickstream.topics import Topics
from ingest_api.auth import write_key_from_authorization
from ingest_api.body import MAX_EVENT_BYTES, MAX_REQUEST_BYTES, MalformedBody, PayloadTooLarge, decode_body
from ingest_api.client import client_ip, parse_networks
from ingest_api.enrich import Requester, build_event, parse_incoming
from ingest_api.errors import IngestError, InvalidEvent, OriginNotAllowed, RateLimited, UnknownWriteKey
from ingest_api.metrics import IngestMetrics
from ingest_api.openapi import install_openapi
from ingest_api.ratelimit import RateLimiter
from ingest_api.tracker import tracker_router

log = logging.getLogger("clickstream.api")

# Segment's single-call endpoints, by full and by one-letter name (analytics.js uses the latter).
CALL_TYPES = {"track": "track", "page": "page", "screen": "screen", "identify": "identify",
              "group": "group", "alias": "alias"}
SHORT_NAMES = {name[0]: name for name in CALL_TYPES}


class EventProducer(Protocol):
    async def send_many(self, records: list[tuple[str, str, bytes]]) -> None: ...

    async def ready(self, topic: str) -> bool: ...

    async def stop(self) -> None: ...


_ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 413: "payload_too_large",
                415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}


@dataclass
class Outcome:
    """What became of a request's calls."""

    accepted: list[Event] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)


def _error(status: int, message: str, request_id: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    # "code" and "message" too: RudderStack's SDKs read those, and without them retry a 4xx forever.
    return JSONResponse(
        {"success": False, "error": message, "code": _ERROR_CODES.get(status, "error"), "message": message,
         "request_id": request_id, **extra},
        status_code=status,
        headers={"X-Request-ID": request_id, **(headers or {})},
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (a huge upload is never held in memory)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request is {int(declared) // 1024} KB; the limit is {limit // 1024} KB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request is over {limit // 1024} KB, the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _truncated_json(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[: RejectedEvent.PAYLOAD_LIMIT]


def create_app(
    settings: Settings,
    producer: EventProducer,
    sources: SourceRegistry | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    topics = Topics.from_settings(settings)
    sources = sources or SourceRegistry.from_settings(settings)
    trusted_proxies = parse_networks(settings.trusted_proxies)
    limiter = RateLimiter()
    metrics = IngestMetrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await producer.stop()

    app = FastAPI(
        title="clickstream ingest API",
        description="Segment-compatible HTTP Tracking API. Authenticate with the write key as HTTP Basic user name "
        "(empty password) or as `writeKey` in the body.",
        lifespan=lifespan,
    )
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

    def authenticate(request: Request, body: Any) -> Source:
        key = write_key_from_authorization(request.headers.get("authorization"))
        if key is None and isinstance(body, dict):
            key = body.get("writeKey")
            calls = body.get("batch")
            if key is None and isinstance(calls, list) and calls and isinstance(calls[0], dict):
                key = calls[0].get("writeKey")
        source = sources.lookup(key if isinstance(key, str) else None)
        if source is None:
            raise UnknownWriteKey(
                "missing or unknown write key: send it as the HTTP Basic user name or as 'writeKey' in the body"
            )
        origin = request.headers.get("origin")
        if origin and not source.allows_origin(origin):
            raise OriginNotAllowed(f"origin {origin!r} is not allowed for source {source.name!r}")
        return source

    def check_rate(source: Source, calls: int) -> None:
        if source.rate_limit is None:
            return
        wait = limiter.wait_time(source.write_key, source.rate_limit.per_second, source.rate_limit.burst, calls, clock())
        if wait > 0:
            raise RateLimited(f"rate limit of source {source.name!r} exceeded; retry in {wait:.1f} s", wait)

    def split_calls(body: Any, call_type: str | None) -> tuple[list[Any], Any]:
        """The calls of a request and the request's sentAt; ``call_type`` None means a batch."""
        if not isinstance(body, dict):
            raise MalformedBody(f"the body must be a JSON object, got {type(body).__name__}")
        if call_type is not None:
            return [body], None
        calls = body.get("batch")
        if not isinstance(calls, list) or not calls:
            raise MalformedBody("a batch needs a non-empty 'batch' array of calls")
        return calls, body.get("sentAt")

    def process_calls(calls: list[Any], call_type: str | None, sent_at: Any, source: Source,
                      requester: Requester, request_id: str, endpoint: str) -> Outcome:
        outcome, received_at = Outcome(), now()
        for index, original in enumerate(calls):
            call = original
            try:
                if call_type is None:  # a single call's body was already held to the limit
                    size = len(json.dumps(call, default=str))
                    if size > MAX_EVENT_BYTES:
                        raise InvalidEvent(f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes")
                if isinstance(call, dict) and sent_at is not None and "sentAt" not in call:
                    call = {**call, "sentAt": sent_at}  # a batch's sentAt applies to each of its calls
                if call_type is None and not (isinstance(call, dict) and call.get("type") in CALL_TYPES):
                    raise InvalidEvent(f"'type' must be one of {', '.join(CALL_TYPES)}")
                incoming = parse_incoming(call, call_type)
                outcome.accepted.append(build_event(incoming, source=source.name, received_at=received_at,
                                                    requester=requester))
            except InvalidEvent as exc:
                outcome.rejected.append(RejectedEvent(
                    received_at=received_at, source=source.name, reason=str(exc), payload=_truncated_json(original),
                    endpoint=endpoint, index=index if call_type is None else None, request_id=request_id,
                ))
        return outcome

    async def produce(outcome: Outcome) -> None:
        records = [(topics.raw, e.device_key, e.to_bytes()) for e in outcome.accepted]
        # Rejected calls are kept too, keyed by source, for inspection and replay.
        records += [(topics.invalid, r.source, r.to_bytes()) for r in outcome.rejected]
        started = time.perf_counter()
        await producer.send_many(records)
        metrics.produce_seconds.observe(time.perf_counter() - started)

    async def ingest(request: Request, call_type: str | None) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        endpoint = call_type or "batch"
        started = time.perf_counter()
        source: Source | None = None
        outcome = Outcome()
        try:
            raw = await read_limited(request, MAX_REQUEST_BYTES)
            limit = MAX_REQUEST_BYTES if call_type is None else MAX_EVENT_BYTES
            # A malformed body cannot name its write key; the header still can, so try that first.
            try:
                body = decode_body(raw, content_type=request.headers.get("content-type"),
                                   content_encoding=request.headers.get("content-encoding"), limit=limit)
            except MalformedBody as exc:
                source = authenticate(request, None)
                outcome.rejected.append(RejectedEvent(
                    received_at=now(), source=source.name, reason=str(exc),
                    payload=raw[: RejectedEvent.PAYLOAD_LIMIT].decode(errors="replace"),
                    endpoint=endpoint, request_id=request_id,
                ))
                await produce(outcome)
                raise
            source = authenticate(request, body)
            calls, sent_at = split_calls(body, call_type)
            check_rate(source, len(calls))
            peer = request.client.host if request.client else None
            requester = Requester(
                ip=client_ip(peer, request.headers.get("x-forwarded-for"), trusted_proxies),
                user_agent=request.headers.get("user-agent"),
                anonymize_ip=settings.anonymize_ip,
            )
            outcome = process_calls(calls, call_type, sent_at, source, requester, request_id, endpoint)
            await produce(outcome)
        except IngestError as exc:
            headers = {}
            if exc.retriable:
                headers["Retry-After"] = str(max(1, round(getattr(exc, "retry_after_s", 5))))
            response = _error(exc.status, str(exc), request_id, headers)
            outcome.accepted.clear()  # nothing of this request is acknowledged
            return finish(response, request_id, endpoint, started, source, outcome, reason=type(exc).__name__)
        rejected = [{"index": r.index, "reason": r.reason} for r in outcome.rejected]
        if call_type is not None and outcome.rejected:
            response = _error(400, f"invalid event: {outcome.rejected[0].reason}", request_id)
        elif call_type is None and not outcome.accepted:
            response = _error(400, "no valid event in the batch", request_id, rejected=rejected)
        else:
            payload: dict[str, Any] = {"success": True, "request_id": request_id}
            if call_type is None:
                payload.update(accepted=len(outcome.accepted), rejected=rejected)
            else:
                payload["event_id"] = outcome.accepted[0].event_id
            response = JSONResponse(payload, headers={"X-Request-ID": request_id})
        return finish(response, request_id, endpoint, started, source, outcome)

    def finish(response: Response, request_id: str, endpoint: str, started: float, source: Source | None,
               outcome: Outcome, reason: str | None = None) -> Response:
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if outcome.accepted:
            metrics.events.labels("accepted", "").inc(len(outcome.accepted))
        for r in outcome.rejected:
            metrics.events.labels("rejected", r.reason.split(":", 1)[0][:60]).inc()
        log.info(
            "%s %s", endpoint, response.status_code,
            extra={"request_id": request_id, "status": response.status_code, "endpoint": endpoint,
                   "source": source.name if source else None, "accepted": len(outcome.accepted),
                   "rejected": len(outcome.rejected), "error": reason,
                   "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
        )
        return response

    def route(call_type: str | None):
        async def handler(request: Request) -> Response:
            return await ingest(request, call_type)

        return handler

    for name, call_type in CALL_TYPES.items():
        app.add_api_route(f"/v1/{name}", route(call_type), methods=["POST"], summary=f"Send one {name} call")
    for short, call_type in SHORT_NAMES.items():
        app.add_api_route(f"/v1/{short}", route(call_type), methods=["POST"], include_in_schema=False)
    for path in ("/v1/batch", "/v1/import", "/v1/b"):
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
            return _error(exc.status, str(exc), uuid.uuid4().hex)
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
