from datetime import datetime, timedelta, timezone

import pytest

from ingest_api.enrich import MAX_NESTING, UrlParts, build_event, corrected_timestamp, nests_deeper_than, parse_incoming, url_parts
from ingest_api.errors import InvalidEvent

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "sent_at,original,expected",
    [
        # client clock 10 minutes fast: the event happened 5 s before it was sent
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=10, seconds=-5), T0 - timedelta(seconds=5)),
        (None, T0 - timedelta(hours=1), T0 - timedelta(hours=1)),  # no sentAt: trust the timestamp
        (T0, None, T0),  # no timestamp: it happened on arrival
        (None, None, T0),
    ],
)
def test_corrected_timestamp(sent_at, original, expected):
    assert corrected_timestamp(T0, sent_at, original) == expected


def test_naive_timestamps_are_utc():
    assert corrected_timestamp(T0, None, datetime(2026, 1, 1, 8, 0)) == datetime(2026, 1, 1, 8, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "body,event_type,message",
    [
        ([1, 2], "track", "must be a JSON object"),
        ({"event": "x"}, "track", "userId or anonymousId"),
        ({"userId": "u"}, "track", "requires 'event'"),
        ({"userId": "u", "event": "x", "timestamp": "yesterday"}, "track", "timestamp"),
        ({"userId": "u", "properties": "nope"}, "page", "properties"),
    ],
)
def test_invalid_events_say_why(body, event_type, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_incoming(body, event_type)


def test_build_page_event():
    incoming = parse_incoming(
        {
            "anonymousId": "a1",
            "messageId": "m-1",
            "name": "Pricing",
            "properties": {"url": "https://shop.example/pricing?utm_source=news&utm_medium=email", "title": "P"},
            "context": {"page": {"referrer": "https://search.example/"}, "campaign": {"name": "black-friday"}},
            "timestamp": "2026-11-27T11:59:00Z",
            "sentAt": "2026-11-27T11:59:10Z",
            "custom": {"k": 1},
        },
        "page",
    )
    event = build_event(incoming, source="web", received_at=T0)
    assert event.event_id == "m-1"
    assert event.type == "page" and event.event == "Pricing"
    assert event.path == "/pricing"
    assert event.referrer == "https://search.example/"
    assert event.title == "P"
    assert (event.utm_source, event.utm_medium, event.utm_campaign) == ("news", "email", "black-friday")
    assert event.timestamp == T0 - timedelta(seconds=10)
    assert event.source == "web"
    assert event.context["extra"] == {"custom": {"k": 1}}
    assert event.visitor_id == "a1"


def test_message_id_generated_when_absent():
    incoming = parse_incoming({"userId": "u1", "event": "Signed Up"}, "track")
    a = build_event(incoming, source="s", received_at=T0)
    b = build_event(incoming, source="s", received_at=T0)
    assert a.event_id and a.event_id != b.event_id
    assert a.visitor_id == "u1"


def test_a_url_that_cannot_be_parsed_gives_no_host_and_keeps_the_event():
    incoming = parse_incoming({"anonymousId": "a1", "properties": {"url": "http://[shop/x?utm_source=ad"},
                               "context": {"campaign": {"source": "mail"}, "page": {"path": "/x"}}}, "page")
    event = build_event(incoming, source="s", received_at=T0)
    assert event.url == "http://[shop/x?utm_source=ad" and event.host is None
    assert event.path == "/x" and event.query is None
    assert event.utm_source == "mail"  # the URL's own cannot be read; context.campaign still can


def test_url_parts_reads_encoded_utm_names_and_long_urls_alike():
    assert url_parts("https://Shop.Example/a?utm%5Fsource=x&utm_medium=&utm_campaign=c") == UrlParts(
        "shop.example", "/a", "utm%5Fsource=x&utm_medium=&utm_campaign=c", "x", None, "c")
    long_url = "https://shop.example/p?utm_source=s&q=" + "x" * 5000
    assert url_parts(long_url).utm_source == "s"
    assert url_parts("http://[::1") is None


def _nested(levels: int):
    value = 1
    for _ in range(levels):
        value = {"x": value}
    return value


def test_nesting_is_counted_from_the_call_itself():
    assert not nests_deeper_than({"a": [1, {"b": 2}]}, 3) and nests_deeper_than({"a": [1, {"b": 2}]}, 2)
    assert not nests_deeper_than(_nested(MAX_NESTING)) and nests_deeper_than(_nested(MAX_NESTING + 1))


def test_an_event_at_the_nesting_limit_can_be_read_back_by_the_processor():
    from clickstream.events import Event

    call = {"anonymousId": "a", "event": "Deep", "properties": _nested(MAX_NESTING - 1)}
    assert not nests_deeper_than(call)
    event = build_event(parse_incoming(call, "track"), source="s", received_at=T0)
    assert Event.from_bytes(event.to_bytes()).properties == call["properties"]
