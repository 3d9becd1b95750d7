"""Turning an accepted Segment call into the :class:`Event` that travels on Kafka.

Pure functions: the clock (``received_at``) and the source are passed in.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from clickstream.events import Event, IncomingEvent
from ingest_api.client import anonymize_ip, parse_user_agent
from ingest_api.errors import InvalidEvent


def parse_incoming(body: Any, event_type: str | None = None) -> IncomingEvent:
    """Validate one decoded JSON body; ``event_type`` is the type the endpoint implies."""
    if not isinstance(body, dict):
        raise InvalidEvent(f"the body must be a JSON object, got {type(body).__name__}")
    if event_type is not None:
        body = {**body, "type": event_type}
    try:
        return IncomingEvent.model_validate(body)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from None


# Levels of objects and arrays a call may nest (the call itself is the first). The stream
# processor reads events with pydantic, which refuses documents nested 200 levels deep; an event
# it cannot read would have been acknowledged and then never reach the lake.
MAX_NESTING = 64


def nests_deeper_than(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether objects and arrays in ``value`` nest more than ``limit`` levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def as_utc(t: datetime) -> datetime:
    # A timestamp without a zone is taken as UTC, as Segment does.
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def corrected_timestamp(received_at: datetime, sent_at: datetime | None, original: datetime | None) -> datetime:
    """Event time corrected for the client's clock: receivedAt - (sentAt - originalTimestamp).

    Without ``sentAt`` the client's clock cannot be measured, so its timestamp is taken as is;
    without any timestamp the event happened when it arrived.
    """
    if original is None:
        return received_at
    original = as_utc(original)
    if sent_at is None:
        return original
    return received_at - (as_utc(sent_at) - original)


def _page(incoming: IncomingEvent) -> dict[str, Any]:
    page = incoming.context.get("page")
    return page if isinstance(page, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class UrlParts(NamedTuple):
    host: str | None
    path: str
    query: str
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None


# Longer URLs are parsed each time, so the cache holds at most a few megabytes.
_CACHED_URL_LENGTH = 2048


def url_parts(url: str) -> UrlParts | None:
    """Host, path, query and UTM parameters of a URL; None when it cannot be parsed (e.g. ``http://[x``)."""
    return (_cached_url_parts if len(url) <= _CACHED_URL_LENGTH else _url_parts)(url)


def _url_parts(url: str) -> UrlParts | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    query = parse_qs(parts.query)
    utm = [values[0] if (values := query.get(f"utm_{name}")) else None for name in ("source", "medium", "campaign")]
    return UrlParts(host, parts.path, parts.query, *utm)


# A site's visitors load the same pages over and over: parsing each URL once saves about a tenth
# of the API's own work on a page or track call.
_cached_url_parts = lru_cache(maxsize=4096)(_url_parts)


def _host(url: str | None) -> str | None:
    parts = url_parts(url) if url else None
    return parts.host if parts else None


def page_fields(incoming: IncomingEvent) -> dict[str, str | None]:
    """url, host, path, query, referrer, referrer host and title, from the call's properties or context.page."""
    props, page = incoming.properties, _page(incoming)
    url = _text(props.get("url")) or _text(page.get("url"))
    path = _text(props.get("path")) or _text(page.get("path"))
    query = None
    parts = url_parts(url) if url is not None else None
    if parts is not None:
        path = path or parts.path or "/"
        query = parts.query or None
    if query is None:
        search = _text(props.get("search")) or _text(page.get("search"))
        query = search.lstrip("?") or None if search else None
    referrer = _text(props.get("referrer")) or _text(page.get("referrer"))
    return {
        "url": url,
        "host": parts.host if parts else None,
        "path": path,
        "query": query,
        "referrer": referrer,
        "referrer_host": _host(referrer),
        "title": _text(props.get("title")) or _text(page.get("title")),
    }


@dataclass(frozen=True)
class Requester:
    """What the HTTP layer knows of the sender: its address (already resolved past trusted proxies) and agent."""

    ip: str | None = None
    user_agent: str | None = None
    anonymize_ip: bool = True


def client_fields(incoming: IncomingEvent, requester: Requester) -> dict[str, Any]:
    """Browser, OS, device type, bot flag and IP.

    A server-side SDK relays the visitor's agent and address in ``context.userAgent`` and
    ``context.ip`` (Segment's convention); otherwise the request's own are used.
    """
    agent = parse_user_agent(_text(incoming.context.get("userAgent")) or requester.user_agent)
    ip = _text(incoming.context.get("ip")) or requester.ip
    return {
        "browser": agent.browser,
        "os": agent.os,
        "device_type": agent.device_type,
        "is_bot": agent.is_bot,
        "ip": anonymize_ip(ip) if requester.anonymize_ip else ip,
    }


def build_event(
    incoming: IncomingEvent, *, source: str, received_at: datetime, requester: Requester = Requester()
) -> Event:
    event_name = incoming.event if incoming.type == "track" else (incoming.name or incoming.event)
    extra = {k: v for k, v in (incoming.model_extra or {}).items() if k != "writeKey"}
    context = dict(incoming.context)
    fields = page_fields(incoming)
    # Fields outside Segment's spec are kept, not dropped: they land under context.extra.
    if extra:
        context["extra"] = json.loads(json.dumps(extra, default=str))
    try:
        timestamp = corrected_timestamp(received_at, incoming.sent_at, incoming.timestamp)
        sent_at = as_utc(incoming.sent_at) if incoming.sent_at else None
    except OverflowError:
        # e.g. year 0166 sent at year 6423: the correction leaves the calendar.
        raise InvalidEvent("timestamp and sentAt are too far apart to give an event time") from None
    return Event(
        event_id=incoming.message_id or str(uuid.uuid4()),
        type=incoming.type,
        event=event_name,
        anonymous_id=incoming.anonymous_id,
        user_id=incoming.user_id,
        group_id=incoming.group_id,
        previous_id=incoming.previous_id,
        timestamp=timestamp,
        received_at=received_at,
        sent_at=sent_at,
        source=source,
        properties=incoming.properties,
        traits=incoming.traits,
        context=context,
        **fields,
        **utm_fields(fields["url"], context),
        **client_fields(incoming, requester),
    )


def utm_fields(url: str | None, context: dict[str, Any]) -> dict[str, str | None]:
    """UTM source/medium/campaign from the URL's query, else from Segment's context.campaign."""
    parts = url_parts(url) if url else None
    campaign = context.get("campaign") if isinstance(context.get("campaign"), dict) else {}
    return {
        "utm_source": (parts and parts.utm_source) or _text(campaign.get("source")),
        "utm_medium": (parts and parts.utm_medium) or _text(campaign.get("medium")),
        "utm_campaign": (parts and parts.utm_campaign) or _text(campaign.get("name")),
    }
