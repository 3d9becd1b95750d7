"""Reading a topic back to its end (the reactor's ledger and dead letters) on the real broker."""

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from clickstream.kafka import create_topics
from clickstream.topics import Topics
from reactors.store import read_to_end

pytestmark = pytest.mark.integration


def test_every_record_is_read_back_even_where_the_broker_reports_an_earlier_end(settings_factory):
    settings = settings_factory()
    topic = Topics.from_settings(settings).dead_letters

    async def scenario():
        await create_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for i in range(40):
                await producer.send_and_wait(topic, f"{i}".encode(), key=f"k{i}".encode())
        finally:
            await producer.stop()
        return await read_to_end(settings, topic)

    records = asyncio.run(scenario())
    assert sorted(int(r.value) for r in records) == list(range(40))
