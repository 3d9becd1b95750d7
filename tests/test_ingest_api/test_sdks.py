"""The official server-side SDKs deliver events end to end, unchanged: each one sends every call type to
the API started as users run it (`python -m clickstream api`, a real uvicorn server) against the real
Tansu broker, and every call is read back from ``clickstream.raw`` exactly once, field by field.

What they send (read from their source and checked on the wire):

* ``segment-analytics-python``: ``POST {host}/v1/batch``, ``Authorization: Basic base64(writeKey:)``
  and ``writeKey`` in the body, gzip only with ``gzip=True``, library ``analytics-python``.
* ``rudder-sdk-python``: ``POST {host}/v1/batch``, Basic auth only, gzip by default, library also named
  ``analytics-python`` (its own version number), identify traits under ``context.traits``, and
  ``channel``/``integrations`` fields outside Segment's spec.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from rudderstack.analytics import Client as RudderClient
from rudderstack.analytics.version import VERSION as RUDDER_VERSION
from segment.analytics import Client as SegmentClient
from segment.analytics.version import VERSION as SEGMENT_VERSION

from clickstream.events import Event, RejectedEvent
from clickstream.kafka import create_topics
from clickstream.topics import Topics

pytestmark = pytest.mark.integration

# Top-level fields of a Segment call that map to columns of Event; the API keeps any other field
# under context.extra.
SPEC_FIELDS = {"type", "messageId", "anonymousId", "userId", "event", "name", "groupId", "previousId",
               "timestamp", "sentAt", "properties", "traits", "context", "writeKey"}


@dataclass(frozen=True)
class Sdk:
    make: Any  # the client class
    library: dict[str, str]  # what it puts in context.library
    options: dict[str, Any]  # bounded retries so a failing delivery fails the test fast instead of hanging


SDKS = {
    "segment": Sdk(SegmentClient, {"name": "analytics-python", "version": SEGMENT_VERSION},
                   dict(gzip=False, max_retries=2, max_rate_limit_duration=10, timeout=10)),
    "segment-gzip": Sdk(SegmentClient, {"name": "analytics-python", "version": SEGMENT_VERSION},
                        dict(gzip=True, max_retries=2, max_rate_limit_duration=10, timeout=10)),
    "rudder": Sdk(RudderClient, {"name": "analytics-python", "version": RUDDER_VERSION},
                  dict(gzip=True, max_retries=2, timeout=10)),
}


@pytest.fixture
def api(settings_factory, free_ports, running_api):
    """The API as a subprocess on its own topics and port; returns (base_url, settings)."""
    settings = settings_factory(api_port=free_ports())
    asyncio.run(create_topics(settings))
    return running_api(settings), settings


def deliver(client, timeout: float = 15.0) -> None:
    """flush() and join the SDK's consumer thread, failing (not hanging) if that takes over ``timeout``."""
    worker = threading.Thread(target=client.shutdown, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"the SDK did not deliver its queue within {timeout:.0f} s"


def send_every_call(client, user: str, anon: str, group: str) -> dict[str, tuple[dict, dict]]:
    """One call of each type; returns, by type, (what we passed, the message the SDK queued)."""
    calls = {
        "identify": dict(user_id=user, anonymous_id=anon,
                         traits={"email": "ada@example.com", "plan": "pro", "logins": 3}),
        "track": dict(user_id=user, event="Order Completed",
                      properties={"order_id": "o-17", "revenue": 42.5, "currency": "EUR", "first": True,
                                  "coupon": None, "items": [{"sku": "A-1", "qty": 2}], "note": "naïve ✓"},
                      context={"app": {"name": "sdk-test", "version": "1.2.3"}}),
        "page": dict(anonymous_id=anon, category="Docs", name="Pricing",
                     properties={"url": "https://shop.example/pricing?utm_source=newsletter", "title": "Pricing",
                                 "referrer": "https://www.google.com/"}),
        "screen": dict(user_id=user, name="Home Screen", properties={"variant": "B", "build": 512}),
        "group": dict(user_id=user, group_id=group, traits={"name": "Acme", "employees": 42}),
        "alias": dict(previous_id=anon, user_id=user),
    }
    sent = {}
    for call_type, kwargs in calls.items():
        ok, msg = getattr(client, call_type)(**copy.deepcopy(kwargs))  # SDKs mutate what they get
        assert ok, f"the SDK did not queue the {call_type} call"
        sent[call_type] = (kwargs, msg)
    return sent


@pytest.mark.parametrize("sdk_name", list(SDKS))
def test_sdk_delivers_every_call_type_exactly_once(sdk_name, api, read_topic):
    sdk = SDKS[sdk_name]
    url, settings = api
    errors = []
    client = sdk.make(settings.demo_write_key, host=url, on_error=lambda exc, batch: errors.append((exc, batch)),
                      **sdk.options)
    unique = uuid.uuid4().hex[:8]
    user, anon, group = f"user-{unique}", f"anon-{unique}", f"group-{unique}"

    sent = send_every_call(client, user, anon, group)
    deliver(client)
    assert errors == [], f"{sdk_name} reported delivery errors: {errors!r}"

    topics = Topics.from_settings(settings)
    records = read_topic(settings.bootstrap_servers, topics.raw, expected=len(sent), timeout=15)
    events = [Event.from_bytes(r.value) for r in records]
    # Exactly once: one event per call, with the SDK's messageId as its id.
    assert sorted(e.event_id for e in events) == sorted(msg["messageId"] for _, msg in sent.values())
    by_id = {e.event_id: (r.key, e) for r, e in zip(records, events)}
    rejected = [RejectedEvent.from_bytes(r.value) for r in
                read_topic(settings.bootstrap_servers, topics.invalid, expected=0, timeout=5)]
    assert rejected == []

    for call_type, (kwargs, msg) in sent.items():
        key, e = by_id[msg["messageId"]]
        where = f"{sdk_name} {call_type}"
        assert e.type == call_type, where
        assert e.source == "demo", where
        # What we passed to the SDK...
        assert e.user_id == kwargs.get("user_id"), where
        assert e.anonymous_id == kwargs.get("anonymous_id"), where
        # Keyed by device: the anonymous id when there is one, else the user id.
        assert key == (kwargs.get("anonymous_id") or kwargs.get("user_id")).encode(), where
        assert e.properties == kwargs.get("properties", {}), where
        assert e.group_id == kwargs.get("group_id"), where
        assert e.previous_id == kwargs.get("previous_id"), where
        expected_name = kwargs.get("event") if call_type == "track" else kwargs.get("name")
        assert e.event == expected_name, where
        assert e.context["library"] == sdk.library, where
        for name, value in kwargs.get("context", {}).items():
            assert e.context[name] == value, where
        # ...and exactly what the SDK sent for it: context as is, fields outside Segment's spec under
        # context.extra, the event time the SDK stamped (same clock here, so the skew correction is ~0).
        traits_sent = msg.get("traits", {})
        assert e.traits == traits_sent, where
        extra = {k: v for k, v in msg.items() if k not in SPEC_FIELDS}
        assert {k: v for k, v in e.context.items() if k != "extra"} == msg["context"], where
        assert e.context.get("extra", {}) == extra, where
        assert e.sent_at is not None, where
        assert abs((e.timestamp - datetime.fromisoformat(msg["timestamp"])).total_seconds()) < 5, where

    # Traits: Segment sends them at the top level; RudderStack's identify sends them under context.traits.
    identify_kwargs, identify_msg = sent["identify"]
    identify = by_id[identify_msg["messageId"]][1]
    if sdk.make is RudderClient:
        assert identify.context["traits"] == identify_kwargs["traits"] and identify.traits == {}
    else:
        assert identify.traits == identify_kwargs["traits"]
    group_kwargs, group_msg = sent["group"]
    assert by_id[group_msg["messageId"]][1].traits == group_kwargs["traits"]
    page = by_id[sent["page"][1]["messageId"]][1]
    page_props = sent["page"][0]["properties"]
    assert (page.url, page.title, page.referrer) == (page_props["url"], page_props["title"], page_props["referrer"])
    assert page.context["extra"]["category"] == "Docs"


@pytest.mark.parametrize("sdk_name", ["segment", "rudder"])
def test_sdk_sees_a_bad_write_key_as_an_api_error(sdk_name, api):
    """A 4xx must reach the SDK as an API error with its status (RudderStack's reads "code" and "message";
    without them it raised KeyError and retried a permanent error)."""
    url, _settings = api
    errors = []
    sdk = SDKS[sdk_name]
    client = sdk.make("wrong-write-key", host=url, on_error=lambda exc, batch: errors.append(exc), **sdk.options)
    client.track(user_id="u1", event="Signed Up")
    deliver(client)
    assert errors and all(getattr(e, "status", None) == 401 for e in errors), errors
