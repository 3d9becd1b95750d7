"""The sink against the real broker and S3 server: every event lands exactly once, also when a
restarted sink re-reads records an earlier run uploaded but never committed."""

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clickstream.kafka import create_topics
from clickstream.lake import parse_object_key
from clickstream.topics import Topics
from query.engine import connect, run_query
from sink.destination import LakeDestination
from sink.main import consume

pytestmark = pytest.mark.integration

T0 = datetime.now(timezone.utc).replace(minute=50, second=0, microsecond=0) - timedelta(hours=3)


async def produce(settings, events):
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(Topics.from_settings(settings).events, e.to_bytes(), key=e.visitor_id.encode())
    finally:
        await producer.stop()


async def committed(settings) -> dict[int, int]:
    topics = Topics.from_settings(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=topics.group("sink"),
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.events, p) for p in range(settings.topic_partitions)]
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


def committed_up_to(settings, count):
    """A check that the sink's committed offsets add up to ``count`` records."""
    async def check():
        return sum((await committed(settings)).values()) == count

    return check


async def reset_group(settings) -> None:
    """Rewind the sink's committed offsets to 0: as if its commits had never happened."""
    topics = Topics.from_settings(settings)
    consumer = AIOKafkaConsumer(topics.events, bootstrap_servers=settings.bootstrap_servers,
                                group_id=topics.group("sink"), enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    try:
        # Join the group (Tansu accepts commits only from a member), then rewind.
        while len(consumer.assignment()) < settings.topic_partitions:
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({tp: 0 for tp in consumer.assignment()})
    finally:
        await consumer.stop()


async def run_sink_until(settings, done, timeout=60.0):
    stop = asyncio.Event()
    task = asyncio.create_task(consume(settings, stop))
    deadline = time.monotonic() + timeout
    try:
        while not await done():
            assert time.monotonic() < deadline, "sink did not finish in time"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_events_land_once_even_after_a_lost_commit(settings_factory, event_factory, free_ports):
    n = 60
    # Events spread over three event-time hours, so flushes split into several objects.
    events = [event_factory(timestamp=T0 + timedelta(minutes=3 * i), anonymous_id=f"v{i % 9}") for i in range(n)]
    expected_per_hour = {}
    for e in events:
        expected_per_hour[e.timestamp.hour] = expected_per_hour.get(e.timestamp.hour, 0) + 1

    settings = settings_factory(flush_interval_s=1, sink_port=free_ports())

    def lake_rows():
        con = connect(settings)
        return run_query(con, "select count(*), count(distinct event_id) from events")[1][0]

    async def scenario():
        await create_topics(settings)
        # The first run sees the events in two halves, so it writes two objects per partition and hour...
        await produce(settings, events[: n // 2])
        await run_sink_until(settings, committed_up_to(settings, n // 2))
        await produce(settings, events[n // 2 :])
        await run_sink_until(settings, committed_up_to(settings, n))
        assert lake_rows() == (n, n)
        # ...then its commits are lost: the next run re-reads everything in one go and would cut
        # one object per partition and hour, under other keys, if it did not skip what is stored.
        await reset_group(settings)
        assert sum((await committed(settings)).values()) == 0
        await run_sink_until(settings, committed_up_to(settings, n))

    asyncio.run(scenario())
    assert lake_rows() == (n, n)
    con = connect(settings)
    _, rows = run_query(con, "select hour, count(*) from events group by 1 order by 1")
    assert dict(rows) == expected_per_hour


def test_copies_left_by_a_retried_produce_are_stored_once_also_after_a_restart(settings_factory, event_factory,
                                                                                  free_ports):
    n = 40
    events = [event_factory(timestamp=T0 + timedelta(minutes=i), anonymous_id=f"v{i % 5}") for i in range(n)]
    settings = settings_factory(flush_interval_s=1, sink_port=free_ports())

    async def scenario():
        await create_topics(settings)
        await produce(settings, events[: n // 2])
        await run_sink_until(settings, committed_up_to(settings, n // 2))
        # A producer resends part of what it wrote before (its answer was lost), then goes on. The
        # sink restarted in between: it learns the ids of the records before its resume point again.
        copies = events[5:15]
        await produce(settings, copies + events[n // 2:])
        await run_sink_until(settings, committed_up_to(settings, n + len(copies)))

    asyncio.run(scenario())
    _, rows = run_query(connect(settings), "select count(*), count(distinct event_id) from events")
    assert rows[0] == (n, n)


def test_the_sink_compacts_the_closed_hours_it_has_committed(settings_factory, event_factory, free_ports):
    n = 36  # three minutes apart from T0: up to 35 minutes past the hour before this one, a closed hour
    events = [event_factory(timestamp=T0 + timedelta(minutes=3 * i), anonymous_id=f"v{i % 11}") for i in range(n)]
    expected_per_hour = {}
    for e in events:
        expected_per_hour[e.timestamp.hour] = expected_per_hour.get(e.timestamp.hour, 0) + 1
    settings = settings_factory(flush_interval_s=1, sink_port=free_ports(), compact_interval_s=1, compact_grace_s=0)
    destination = LakeDestination.from_settings(settings)

    def keys_by_hour():
        by_hour = {}
        for key in destination.list_keys("events/"):
            by_hour.setdefault(key.rsplit("/", 1)[0], []).append(key)
        return by_hour

    written = set()

    async def compacted():
        # Every hour of these events has closed: once the sink has committed them all, each hour
        # becomes one object, and the small ones go (no grace here).
        by_hour = keys_by_hour()
        written.update(k for keys in by_hour.values() for k in keys)
        return (sum((await committed(settings)).values()) == n and len(by_hour) == len(expected_per_hour)
                and all(len(keys) == 1 for keys in by_hour.values()))

    async def scenario():
        await create_topics(settings)
        await produce(settings, events[: n // 2])
        await run_sink_until(settings, committed_up_to(settings, n // 2))  # two objects per partition and hour
        await produce(settings, events[n // 2 :])
        await run_sink_until(settings, compacted)

    asyncio.run(scenario())
    merged = [keys[0] for keys in keys_by_hour().values()]
    assert any(len(parse_object_key(k)[1]) > 1 for k in merged), merged  # objects of several partitions
    assert len(written) > len(merged) + len(expected_per_hour)  # small objects were written, then merged
    con = connect(settings)
    assert run_query(con, "select count(*), count(distinct event_id) from events")[1] == [(n, n)]
    _, rows = run_query(con, "select hour, count(*) from events group by 1 order by 1")
    assert dict(rows) == expected_per_hour
