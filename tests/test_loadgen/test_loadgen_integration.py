"""`clickstream loadgen` against the real API and broker: the raw topic holds exactly the accepted
events the generator expects (duplicates included), the invalid topic exactly the invalid ones,
and the generator's own aggregates agree with counts made independently from the topic."""

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clickstream.events import Event, RejectedEvent
from clickstream.kafka import create_topics
from clickstream.topics import Topics
from loadgen.plan import plan_run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SEED, RATE, DURATION = 17, 150, 3


def test_loadgen_through_the_api_lands_exactly_what_it_expects(settings_factory, free_ports, running_api, read_topic,
                                                               tmp_path):
    import asyncio

    # A rate-limited source, so the run meets 429s and has to honor Retry-After.
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  - name: loadtest\n    write_key: wk_loadtest_123\n"
                       "    rate_limit: {per_second: 150, burst: 60}\n")
    settings = settings_factory(sources_file=sources, api_port=free_ports())
    asyncio.run(create_topics(settings))
    url = running_api(settings)

    expected_path = tmp_path / "expected.json"
    start = datetime.now(timezone.utc) - timedelta(days=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env(), PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "loadgen", "--rate", str(RATE), "--duration", str(DURATION),
         "--seed", str(SEED), "--api", url, "--write-key", "wk_loadtest_123", "--expected", str(expected_path),
         "--start", start.strftime("%Y-%m-%dT%H:%M:%S")],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "429: " in result.stdout, result.stdout  # the rate limit was hit and retried through
    expected = json.loads(expected_path.read_text())

    # The same seed planned again (at another time) names the same calls and the same repeats.
    plan = plan_run(SEED, rate=RATE, duration_s=DURATION, now=datetime(2030, 1, 1, tzinfo=timezone.utc))
    sent = [c for d in plan.deliveries for c in d.calls]
    valid_copies = Counter(c.message_id for c in sent if c.valid)
    invalid_copies = Counter(c.message_id for c in sent if not c.valid)
    model = {c.message_id: c for c in plan.calls}
    assert expected["events_accepted"] == sum(valid_copies.values())
    assert expected["invalid_rejected"] == sum(invalid_copies.values()) > 0
    assert expected["duplicates_accepted"] > 0

    topics = Topics.from_settings(settings)
    raw = [Event.from_bytes(r.value) for r in
           read_topic(settings.bootstrap_servers, topics.raw, expected=expected["events_accepted"])]
    assert Counter(e.event_id for e in raw) == valid_copies
    assert len({e.event_id for e in raw}) == expected["distinct_events"]
    invalid = [RejectedEvent.from_bytes(r.value) for r in
               read_topic(settings.bootstrap_servers, topics.invalid, expected=expected["invalid_rejected"])]
    assert Counter(json.loads(r.payload)["messageId"] for r in invalid) == invalid_copies
    assert all(r.source == "loadtest" for r in invalid)

    # Enrichment saw the devices, bots and campaigns the model made.
    for event in raw:
        assert event.device_type == model[event.event_id].device
        assert event.is_bot == (model[event.event_id].device == "bot")
    assert {e.utm_campaign for e in raw} >= {"spring_sale", "weekly_digest"}

    # Sessions counted independently from the topic's event times (corrected for the client clock).
    # Per device (the processor's session key), a gap of the timeout or more starts a new session.
    times = defaultdict(dict)
    for event in raw:
        times[event.device_key][event.event_id] = event.timestamp
    sessions = 0
    for stamps in times.values():
        ordered = sorted(stamps.values())
        sessions += 1 + sum(1 for a, b in zip(ordered, ordered[1:]) if b - a >= timedelta(minutes=30))
    assert sessions == expected["sessions"]
    orders = {e.event_id: e.properties["revenue"] for e in raw if e.event == "Order Completed"}
    assert len(orders) == expected["orders"] and round(sum(orders.values()), 2) == expected["revenue"]
