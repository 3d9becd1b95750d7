"""The visitor model: seeded, shaped as configured, and its invalid calls invalid for the API's own validation."""

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from clickstream.events import IncomingEvent
from ingest_api.client import parse_user_agent
from ingest_api.enrich import build_event, parse_incoming
from ingest_api.errors import InvalidEvent
from loadgen.visitors import Profile, generate_calls

START = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def test_same_seed_same_calls_and_another_seed_other_calls():
    first = generate_calls(11, start=START, span=DAY, target_calls=500)
    again = generate_calls(11, start=START, span=DAY, target_calls=500)
    other = generate_calls(12, start=START, span=DAY, target_calls=500)
    assert [c.payload for c in first] == [c.payload for c in again]
    assert {c.message_id for c in first}.isdisjoint(c.message_id for c in other)


def test_start_and_span_only_place_the_calls_in_time():
    day = generate_calls(5, start=START, span=DAY, target_calls=300)
    minute = generate_calls(5, start=START + 7 * DAY, span=timedelta(minutes=1), target_calls=300)
    assert sorted(c.message_id for c in day) == sorted(c.message_id for c in minute)
    assert all(START <= c.at <= START + DAY for c in day)
    assert all(START + 7 * DAY <= c.at <= START + 7 * DAY + timedelta(minutes=1) for c in minute)


def test_every_call_has_a_unique_message_id_and_times_are_ordered():
    calls = generate_calls(3, start=START, span=DAY, target_calls=2000)
    assert len({c.message_id for c in calls}) == len(calls) >= 2000
    assert [c.at for c in calls] == sorted(c.at for c in calls)


def test_shares_are_near_the_profile():
    profile = Profile()
    calls = generate_calls(21, start=START, span=7 * DAY, target_calls=20_000, profile=profile)
    valid = [c for c in calls if c.valid]
    invalid_share = (len(calls) - len(valid)) / len(valid)
    assert invalid_share == pytest.approx(profile.invalid_share, abs=0.005)
    devices = Counter(c.device for c in valid)
    assert devices["bot"] / len(valid) == pytest.approx(0.03, abs=0.02)  # crawls are shorter than visits
    assert devices["desktop"] > devices["mobile"] > devices["tablet"] > 0
    events = Counter(c.event for c in valid if c.type == "track")
    assert events["Product Viewed"] > events["Product Added"] > events["Order Completed"] > 0
    assert any(c.payload["properties"].get("url", "").count("utm_campaign=") for c in valid if c.type == "page")


def test_variant_b_converts_better_than_a():
    calls = generate_calls(8, start=START, span=7 * DAY, target_calls=20_000)
    exposed = {c.visitor: c.variant for c in calls if c.event == "Experiment Viewed"}
    buyers = {c.visitor for c in calls if c.event == "Order Completed"}
    rate = {v: sum(1 for who, var in exposed.items() if var == v and who in buyers) /
               sum(1 for var in exposed.values() if var == v) for v in ("A", "B")}
    assert rate["B"] > rate["A"] * 1.25


def test_user_agents_are_classified_as_the_device_the_model_says():
    calls = generate_calls(4, start=START, span=DAY, target_calls=1000)
    for call in calls:
        agent = parse_user_agent(call.payload["context"]["userAgent"])
        assert agent.device_type == call.device and agent.is_bot == (call.device == "bot")


def test_the_api_validation_accepts_exactly_the_valid_calls():
    calls = generate_calls(9, start=START, span=DAY, target_calls=3000)
    assert sum(not c.valid for c in calls) > 20
    for call in calls:
        try:
            event = build_event(parse_incoming(call.payload), source="demo", received_at=START)
        except InvalidEvent:
            assert not call.valid, call.payload
        else:
            assert call.valid, call.payload
            assert event.visitor_id == call.visitor and event.event_id == call.message_id
            assert event.timestamp == call.at


def test_pages_carry_path_referrer_and_campaign():
    calls = generate_calls(2, start=START, span=DAY, target_calls=3000)
    pages = [IncomingEvent.model_validate(c.payload) for c in calls if c.valid and c.type == "page"]
    events = [build_event(p, source="demo", received_at=START) for p in pages]
    assert {e.path for e in events} >= {"/", "/products", "/checkout"}
    assert {e.utm_campaign for e in events} >= {"spring_sale", "weekly_digest"}
    assert "www.google.com" in {e.referrer_host for e in events}
