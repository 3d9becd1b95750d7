"""Property tests: whatever a client sends, validation either accepts it or says why, and
enrichment of an accepted call never fails."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_api.client import anonymize_ip, client_ip, parse_networks
from ingest_api.enrich import Requester, build_event, corrected_timestamp, parse_incoming
from ingest_api.errors import InvalidEvent

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
segment_keys = st.sampled_from(["type", "userId", "anonymousId", "event", "name", "properties", "context", "traits",
                                "timestamp", "sentAt", "messageId", "groupId", "previousId", "writeKey", "other"])
calls = st.dictionaries(segment_keys, json_values | st.text(max_size=30), max_size=10)
T0 = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)


@settings(max_examples=400, deadline=None)
@given(body=json_values | calls, call_type=st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]))
def test_validation_accepts_or_explains(body, call_type):
    try:
        incoming = parse_incoming(body, call_type)
    except InvalidEvent as exc:
        assert str(exc)
        return
    event = build_event(incoming, source="s", received_at=T0, requester=Requester(ip="203.0.113.9"))
    assert event.type == call_type and event.visitor_id
    assert event.timestamp.tzinfo is not None
    assert event.ip is None or event.ip == anonymize_ip(event.ip)  # never a full address


@given(
    skew=st.integers(min_value=-10**6, max_value=10**6),
    delay=st.integers(min_value=0, max_value=10**5),
)
def test_clock_skew_correction_recovers_the_true_time(skew, delay):
    # The client's clock is off by `skew` seconds; it sends `delay` seconds after the event.
    true_event_time = T0 - timedelta(seconds=delay)
    client_event = true_event_time + timedelta(seconds=skew)
    client_sent = T0 + timedelta(seconds=skew)
    assert corrected_timestamp(T0, client_sent, client_event) == true_event_time


@given(st.ip_addresses())
def test_anonymized_ips_are_stable_and_drop_the_host_part(ip):
    once = anonymize_ip(str(ip))
    assert anonymize_ip(once) == once
    assert once.endswith(".0") if ip.version == 4 else once.endswith("::") or once.count(":") <= 3


PROXIES = parse_networks(["10.0.0.0/8"])


@given(st.ip_addresses(v=4).filter(lambda ip: ip not in PROXIES[0]), st.lists(st.ip_addresses(v=4), max_size=4))
def test_an_untrusted_peer_is_the_client_whatever_its_header_says(peer, hops):
    header = ", ".join(map(str, hops)) or None
    assert client_ip(str(peer), header, PROXIES) == str(peer)


@settings(deadline=None)
@given(
    timestamp=st.datetimes(timezones=st.timezones() | st.just(timezone.utc)),
    sent_at=st.datetimes(timezones=st.timezones() | st.just(timezone.utc)),
)
def test_any_pair_of_client_times_is_accepted_or_explained(timestamp, sent_at):
    try:
        incoming = parse_incoming({"userId": "u", "event": "x", "timestamp": timestamp.isoformat(),
                                   "sentAt": sent_at.isoformat()}, "track")
        event = build_event(incoming, source="s", received_at=T0)
    except InvalidEvent as exc:
        # Offsets with seconds (historic local mean times) are not ISO 8601; extreme pairs overflow.
        assert "too far apart" in str(exc) or "timestamp" in str(exc) or "sentAt" in str(exc)
        return
    assert event.timestamp.tzinfo is not None
