"""Pipeline health's Kafka snapshot against the real broker: every record counted, the newest found."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from clickstream.kafka import create_topics
from clickstream.topics import Topics
from dashboard.kafka_health import lag_table, read_kafka, stages

pytestmark = pytest.mark.integration


def test_snapshot_counts_every_record_and_finds_the_newest(settings_factory):
    settings = settings_factory()
    topics = Topics.from_settings(settings)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)

    async def produce():
        await create_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for i in range(40):
                await producer.send_and_wait(topics.raw, b"{}", key=f"v{i % 7}".encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    snapshot = read_kafka(settings, timeout_s=30)
    assert sum(o for (t, _), o in snapshot.end_offsets.items() if t == topics.raw) == 40
    assert snapshot.newest[topics.raw] >= before
    lag = lag_table(snapshot, stages(topics))
    raw = lag[lag.topic == topics.raw].iloc[0]
    # No processor has read anything: every record is lag.
    assert (raw.lag, raw.never_committed) == (40, True)
