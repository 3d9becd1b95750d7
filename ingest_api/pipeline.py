"""The collection steps of one request, apart from the web framework that carries it.

A request goes through named steps: read the body -> authenticate the write key ->
check origin and rate -> split into calls -> validate each -> enrich -> produce.
Each rejection says why; in a batch, valid calls are kept and invalid ones are
listed by index and kept on ``clickstream.invalid``. A 2xx is sent only after
Kafka acknowledged every record of the request.

The steps see a request as an :class:`HttpRequest` (lower-case headers, peer address,
body chunks) and answer a :class:`Reply` (status, JSON bytes, headers), so the FastAPI
routes and the lean ASGI front of :mod:`ingest_api.lean` share one definition of them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from clickstream.events import Event, RejectedEvent
from clickstream.settings import Settings
from clickstream.sources import Source, SourceRegistry
from clickstream.topics import Topics
from ingest_api.auth import write_key_from_authorization
from ingest_api.body import MAX_EVENT_BYTES, MAX_REQUEST_BYTES, MalformedBody, PayloadTooLarge, decode_body
from ingest_api.client import client_ip, parse_networks
from ingest_api.enrich import MAX_NESTING, Requester, build_event, nests_deeper_than, parse_incoming
from ingest_api.errors import IngestError, InvalidEvent, OriginNotAllowed, RateLimited, UnknownWriteKey
from ingest_api.metrics import IngestMetrics
from ingest_api.ratelimit import RateLimiter

log = logging.getLogger("clickstream.api")

# Segment's single-call endpoints, by full and by one-letter name (analytics.js uses the latter).
CALL_TYPES = {"track": "track", "page": "page", "screen": "screen", "identify": "identify",
              "group": "group", "alias": "alias"}
SHORT_NAMES = {name[0]: name for name in CALL_TYPES}
BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")


def ingest_routes() -> dict[str, str | None]:
    """Path -> the call type it implies; None for the batch endpoints."""
    routes: dict[str, str | None] = {f"/v1/{name}": call_type for name, call_type in CALL_TYPES.items()}
    routes.update({f"/v1/{short}": call_type for short, call_type in SHORT_NAMES.items()})
    routes.update({path: None for path in BATCH_PATHS})
    return routes


class EventProducer(Protocol):
    async def send_many(self, records: list[tuple[str, str, bytes]]) -> None: ...

    async def ready(self, topic: str) -> bool: ...

    async def stop(self) -> None: ...


_ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 413: "payload_too_large",
                415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}


@dataclass(frozen=True)
class HttpRequest:
    """What the steps need of an HTTP request; ``headers`` has lower-case names (first value wins)."""

    headers: Mapping[str, str]
    peer: str | None
    body: AsyncIterator[bytes]


@dataclass(frozen=True)
class Reply:
    """A JSON answer, already encoded."""

    status: int
    body: bytes
    headers: dict[str, str]


def json_bytes(payload: Any) -> bytes:
    """JSON as Starlette's ``JSONResponse`` renders it (compact, UTF-8), so both paths answer byte for byte alike."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate, or an integer past 64 bits, echoed from a request
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            errors="backslashreplace")


def new_request_id() -> str:
    """32 hex digits. Request ids need to be unique, not unguessable: no system call for them (uuid4's)."""
    return f"{random.getrandbits(128):032x}"


def error_reply(status: int, message: str, request_id: str, headers: dict[str, str] | None = None,
                **extra) -> Reply:
    # "code" and "message" too: RudderStack's SDKs read those, and without them retry a 4xx forever.
    body = {"success": False, "error": message, "code": _ERROR_CODES.get(status, "error"), "message": message,
            "request_id": request_id, **extra}
    return Reply(status, json_bytes(body), {"X-Request-ID": request_id, **(headers or {})})


@dataclass
class Outcome:
    """What became of a request's calls."""

    accepted: list[Event] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)


async def read_limited(declared_length: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (a huge upload is never held in memory)."""
    if declared_length and declared_length.isdigit() and int(declared_length) > limit:
        raise PayloadTooLarge(f"request is {int(declared_length) // 1024} KB; the limit is {limit // 1024} KB")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request is over {limit // 1024} KB, the limit")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _truncated_json(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[: RejectedEvent.PAYLOAD_LIMIT]


class IngestPipeline:
    """The steps of a collection request, with the state they share: sources, rate buckets, metrics."""

    def __init__(self, settings: Settings, producer: EventProducer, sources: SourceRegistry, metrics: IngestMetrics,
                 now: Callable[[], datetime], clock: Callable[[], float]):
        self.topics = Topics.from_settings(settings)
        self.producer = producer
        self.sources = sources
        self.metrics = metrics
        self._now = now
        self._clock = clock
        self._anonymize_ip = settings.anonymize_ip
        self._trusted_proxies = parse_networks(settings.trusted_proxies)
        self._limiter = RateLimiter()
        # Prometheus children by label values: labels() costs a lock and a tuple build on every call.
        self._request_counters: dict[tuple[str, int], Any] = {}
        self._accepted_counter = metrics.events.labels("accepted", "")

    def authenticate(self, headers: Mapping[str, str], body: Any) -> Source:
        key = write_key_from_authorization(headers.get("authorization"))
        if key is None and isinstance(body, dict):
            key = body.get("writeKey")
            calls = body.get("batch")
            if key is None and isinstance(calls, list) and calls and isinstance(calls[0], dict):
                key = calls[0].get("writeKey")
        source = self.sources.lookup(key if isinstance(key, str) else None)
        if source is None:
            raise UnknownWriteKey(
                "missing or unknown write key: send it as the HTTP Basic user name or as 'writeKey' in the body"
            )
        origin = headers.get("origin")
        if origin and not source.allows_origin(origin):
            raise OriginNotAllowed(f"origin {origin!r} is not allowed for source {source.name!r}")
        return source

    def check_rate(self, source: Source, calls: int) -> None:
        if source.rate_limit is None:
            return
        wait = self._limiter.wait_time(source.write_key, source.rate_limit.per_second, source.rate_limit.burst,
                                       calls, self._clock())
        if wait > 0:
            raise RateLimited(f"rate limit of source {source.name!r} exceeded; retry in {wait:.1f} s", wait)

    @staticmethod
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

    def process_calls(self, calls: list[Any], call_type: str | None, sent_at: Any, source: Source,
                      requester: Requester, request_id: str, endpoint: str) -> Outcome:
        outcome, received_at = Outcome(), self._now()
        for index, original in enumerate(calls):
            call = original
            try:
                if isinstance(call, (dict, list)) and nests_deeper_than(call):
                    raise InvalidEvent(f"the call nests objects and arrays more than {MAX_NESTING} levels deep")
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

    async def produce(self, outcome: Outcome) -> None:
        records = [(self.topics.raw, e.device_key, e.to_bytes()) for e in outcome.accepted]
        # Rejected calls are kept too, keyed by source, for inspection and replay.
        records += [(self.topics.invalid, r.source, r.to_bytes()) for r in outcome.rejected]
        started = time.perf_counter()
        await self.producer.send_many(records)
        self.metrics.produce_seconds.observe(time.perf_counter() - started)

    async def handle(self, request: HttpRequest, call_type: str | None) -> Reply:
        """Collect the calls of one request to a collection endpoint; ``call_type`` None is a batch."""
        headers = request.headers
        request_id = headers.get("x-request-id") or new_request_id()
        endpoint = call_type or "batch"
        started = time.perf_counter()
        source: Source | None = None
        outcome = Outcome()
        try:
            raw = await read_limited(headers.get("content-length"), request.body, MAX_REQUEST_BYTES)
            limit = MAX_REQUEST_BYTES if call_type is None else MAX_EVENT_BYTES
            # A malformed body cannot name its write key; the header still can, so try that first.
            try:
                body = decode_body(raw, content_type=headers.get("content-type"),
                                   content_encoding=headers.get("content-encoding"), limit=limit)
            except MalformedBody as exc:
                source = self.authenticate(headers, None)
                outcome.rejected.append(RejectedEvent(
                    received_at=self._now(), source=source.name, reason=str(exc),
                    payload=raw[: RejectedEvent.PAYLOAD_LIMIT].decode(errors="replace"),
                    endpoint=endpoint, request_id=request_id,
                ))
                await self.produce(outcome)
                raise
            source = self.authenticate(headers, body)
            calls, sent_at = self.split_calls(body, call_type)
            self.check_rate(source, len(calls))
            requester = Requester(
                ip=client_ip(request.peer, headers.get("x-forwarded-for"), self._trusted_proxies),
                user_agent=headers.get("user-agent"),
                anonymize_ip=self._anonymize_ip,
            )
            outcome = self.process_calls(calls, call_type, sent_at, source, requester, request_id, endpoint)
            await self.produce(outcome)
        except IngestError as exc:
            extra_headers = {}
            if exc.retriable:
                extra_headers["Retry-After"] = str(max(1, round(getattr(exc, "retry_after_s", 5))))
            reply = error_reply(exc.status, str(exc), request_id, extra_headers)
            outcome.accepted.clear()  # nothing of this request is acknowledged
            return self.finish(reply, request_id, endpoint, started, source, outcome, reason=type(exc).__name__)
        rejected = [{"index": r.index, "reason": r.reason} for r in outcome.rejected]
        if call_type is not None and outcome.rejected:
            reply = error_reply(400, f"invalid event: {outcome.rejected[0].reason}", request_id)
        elif call_type is None and not outcome.accepted:
            reply = error_reply(400, "no valid event in the batch", request_id, rejected=rejected)
        else:
            payload: dict[str, Any] = {"success": True, "request_id": request_id}
            if call_type is None:
                payload.update(accepted=len(outcome.accepted), rejected=rejected)
            else:
                payload["event_id"] = outcome.accepted[0].event_id
            reply = Reply(200, json_bytes(payload), {"X-Request-ID": request_id})
        return self.finish(reply, request_id, endpoint, started, source, outcome)

    def finish(self, reply: Reply, request_id: str, endpoint: str, started: float, source: Source | None,
               outcome: Outcome, reason: str | None = None) -> Reply:
        counter = self._request_counters.get((endpoint, reply.status))
        if counter is None:
            counter = self._request_counters[(endpoint, reply.status)] = self.metrics.requests.labels(
                endpoint, str(reply.status))
        counter.inc()
        if outcome.accepted:
            self._accepted_counter.inc(len(outcome.accepted))
        for r in outcome.rejected:
            self.metrics.events.labels("rejected", r.reason.split(":", 1)[0][:60]).inc()
        log.info(
            "%s %s", endpoint, reply.status,
            extra={"request_id": request_id, "status": reply.status, "endpoint": endpoint,
                   "source": source.name if source else None, "accepted": len(outcome.accepted),
                   "rejected": len(outcome.rejected), "error": reason,
                   "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
        )
        return reply
