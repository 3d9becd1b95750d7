"""Replaying rejected events from the lake through the running API."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from clickstream.events import Event, RejectedEvent
from clickstream.kafka import create_topics
from clickstream.topics import Topics
from ingest_api.replay import StoredRejection, batches, replay_call

T0 = datetime.now(timezone.utc) - timedelta(hours=1)


def rejected(payload, endpoint="batch", index=0, reason="was invalid"):
    return RejectedEvent(received_at=T0, source="demo", reason=reason, payload=payload, endpoint=endpoint,
                         index=index, request_id="req-1")


def test_replayed_calls_get_stable_ids_and_their_type():
    r = StoredRejection("demo", "x", '{"anonymousId": "a", "name": "Home"}', "page", None, "req-9")
    first, again = replay_call(r), replay_call(r)
    assert first["type"] == "page" and first["messageId"] == again["messageId"]
    assert replay_call(StoredRejection("demo", "x", '{"messageId": "m1", "type": "track"}', "batch", 3, "r"))[
        "messageId"] == "m1"
    assert replay_call(StoredRejection("demo", "x", "{oops", "track", None, "r")) is None


def test_batches_stay_under_the_limit():
    calls = [{"x": "y" * 100}] * 50
    split = batches(calls, limit=1000)
    assert sum(map(len, split)) == 50 and all(len(json.dumps(b)) < 1100 for b in split)


@pytest.mark.integration
def test_replay_sends_stored_rejections_back_through_validation(settings_factory, free_ports, running_api,
                                                                   write_lake, read_topic, tmp_path):
    settings = settings_factory(api_port=free_ports())
    asyncio.run(create_topics(settings))
    url = running_api(settings)
    write_lake(settings, [
        rejected(json.dumps({"type": "track", "userId": "u1", "event": "Fixed", "messageId": "m-1"}), index=0),
        rejected(json.dumps({"anonymousId": "a2", "name": "Home"}), endpoint="page", index=None),
        rejected(json.dumps({"type": "track", "userId": "u3"}), index=2, reason="still broken"),
        rejected("{oops", endpoint="track", index=None, reason="malformed JSON"),
    ], table="invalid_events")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    result = subprocess.run([sys.executable, "-m", "clickstream", "replay", "invalid",
                             "--since", (T0 - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S"), "--api", url],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "4 rejected events match" in result.stdout
    assert "sent 3: 2 accepted, 1 rejected again" in result.stdout
    assert "payload is not a JSON object" in result.stderr

    topics = Topics.from_settings(settings)
    raw = [Event.from_bytes(r.value) for r in read_topic(settings.bootstrap_servers, topics.raw, expected=2)]
    assert sorted((e.type, e.visitor_id) for e in raw) == [("page", "a2"), ("track", "u1")]
    assert next(e for e in raw if e.visitor_id == "u1").event_id == "m-1"
    again = [RejectedEvent.from_bytes(r.value) for r in read_topic(settings.bootstrap_servers, topics.invalid,
                                                                   expected=1)]
    assert len(again) == 1 and "requires 'event'" in again[0].reason
