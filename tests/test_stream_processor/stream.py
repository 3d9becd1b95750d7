"""A generated clickstream with known answers, and helpers to run the processor on the real broker.

The answers (sessions, page views per window) are computed here by a deliberately simple,
separate implementation: sort each device's events by time and cut where the gap reaches the
timeout; count page views by window start.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaProducer

from clickstream.events import Event
from clickstream.kafka import create_topics, producer_config
from clickstream.settings import Settings
from clickstream.topics import Topics

TIMEOUT_S = 20  # session timeout of these tests, in event time
WINDOW_S = 10


@dataclass
class Stream:
    events: list[Event]  # in delivery order, repeats included
    sessions: dict[str, tuple[int, int]]  # "device|first delivered event id" -> (event count, page views)
    page_views: Counter  # window start (epoch s) -> page views
    transitions: Counter  # (page, next page) -> count, as delivered (see expected_transitions)


def generate(seed: int, visitors: int = 40, start: datetime | None = None) -> Stream:
    rng = random.Random(seed)
    start = start or datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    timeline = []
    n = 0
    for v in range(visitors):
        anon, user = f"anon-{seed}-{v}", None
        t = start + timedelta(seconds=rng.uniform(0, 60))
        for _ in range(rng.randint(1, 3)):  # sessions
            for _ in range(rng.randint(1, 6)):  # events, a few seconds apart
                if user is None and rng.random() < 0.1:
                    user = f"user-{seed}-{v}"  # signs in: later events carry both ids
                kind = "page" if rng.random() < 0.7 else "track"
                timeline.append(Event(
                    event_id=f"e-{seed}-{n}", type=kind, event=None if kind == "page" else "Clicked",
                    anonymous_id=anon, user_id=user, timestamp=t, received_at=t, source="web",
                    path=rng.choice(["/", "/pricing", "/docs"]) if kind == "page" else None))
                n += 1
                t += timedelta(seconds=rng.uniform(1, 12))
            t += timedelta(seconds=rng.uniform(TIMEOUT_S + 5, TIMEOUT_S + 60))
    timeline.sort(key=lambda e: e.timestamp)
    # Delivery: mostly in time order, neighbours swapped now and then (within the lateness),
    # and one in twenty delivered twice (an SDK retry).
    delivered = list(timeline)
    for i in range(0, len(delivered) - 1, 7):
        delivered[i], delivered[i + 1] = delivered[i + 1], delivered[i]
    with_repeats = []
    for e in delivered:
        with_repeats.append(e)
        if rng.random() < 0.05:
            with_repeats.append(e)
    return Stream(with_repeats, expected_sessions(timeline, with_repeats), expected_page_views(timeline),
                  expected_transitions(timeline, with_repeats))


def expected_sessions(events: list[Event], delivered: list[Event]) -> dict[str, tuple[int, int]]:
    """Sessions of each device: cut where the gap reaches the timeout. A session's id derives from
    the first of its events to be delivered (which, out of order, need not be the earliest)."""
    by_device = defaultdict(list)
    for e in events:
        by_device[e.anonymous_id].append(e)
    order = {}
    for i, e in enumerate(delivered):
        order.setdefault(e.event_id, i)
    sessions = {}
    for device, device_events in by_device.items():
        device_events.sort(key=lambda e: e.timestamp)
        cut = [[]]
        for e in device_events:
            if cut[-1] and (e.timestamp - cut[-1][-1].timestamp).total_seconds() >= TIMEOUT_S:
                cut.append([])
            cut[-1].append(e)
        for session in cut:
            first = min(session, key=lambda e: order[e.event_id])
            sessions[f"{device}|{first.event_id}"] = (len(session), sum(e.type == "page" for e in session))
    return sessions


def expected_transitions(events: list[Event], delivered: list[Event]) -> Counter:
    """Steps from a session's latest page (by event time, among those delivered so far) to a page
    delivered after it with a later time; pages arriving out of order make no step."""
    session_of = {}
    by_device = defaultdict(list)
    for e in events:
        by_device[e.anonymous_id].append(e)
    for device_events in by_device.values():
        device_events.sort(key=lambda e: e.timestamp)
        n, previous = 0, None
        for e in device_events:
            if previous is not None and (e.timestamp - previous).total_seconds() >= TIMEOUT_S:
                n += 1
            session_of[e.event_id] = (e.anonymous_id, n)
            previous = e.timestamp
    latest, seen, steps = {}, set(), Counter()
    for e in delivered:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if e.type != "page":
            continue
        session = session_of[e.event_id]
        last = latest.get(session)
        if last is not None and e.timestamp >= last[0] and last[1] != e.path:
            steps[(last[1], e.path)] += 1
        if last is None or e.timestamp >= last[0]:
            latest[session] = (e.timestamp, e.path)
    return steps


def expected_page_views(events: list[Event]) -> Counter:
    return Counter(int(e.timestamp.timestamp()) // WINDOW_S * WINDOW_S for e in events if e.type == "page")


def settings_for(settings_factory, **overrides) -> Settings:
    # The idle timeout only decides when the watermark starts to move without events (then by the
    # time passed since the last one), so a long one costs these tests nothing and spares a loaded
    # machine's slow fetches from being taken for a quiet stream.
    # A checkpoint here takes a second or two; after a SIGKILL, Tansu sometimes leaves a produce
    # unanswered, and the crash tests wait for the worker's restart within their time budget.
    values = dict(session_timeout_s=TIMEOUT_S, windows_s=[WINDOW_S], lateness_s=5, idle_timeout_s=8,
                  topic_partitions=4, processor_checkpoint_timeout_s=10)
    values.update(overrides)
    return settings_factory(**values)


def produce(settings: Settings, events: list[Event]) -> None:
    """Write events to ``clickstream.raw`` as the API does (keyed by device)."""
    async def run():
        await create_topics(settings)
        producer = AIOKafkaProducer(**producer_config(settings))
        await producer.start()
        try:
            topic = Topics.from_settings(settings).raw
            for e in events:
                await producer.send(topic, key=e.device_key.encode(), value=e.to_bytes())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def start_processor(settings: Settings, log: Path, **overrides) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    env.update({f"CLICKSTREAM_{k.upper()}": str(v) for k, v in overrides.items()})
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", "clickstream", "processor"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
