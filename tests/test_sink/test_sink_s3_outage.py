"""An S3 outage of the lake while the sink runs: it pauses, commits nothing it could not write,
and resumes without losing or repeating a row once S3 is back."""

import asyncio
import time
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer

from clickstream.kafka import committed_offsets, create_topics
from clickstream.topics import Topics
from conftest import start_weed
from query.engine import connect, run_query
from sink.main import consume

pytestmark = pytest.mark.integration


def test_sink_waits_out_an_s3_outage(settings_factory, event_factory, free_ports, tmp_path):
    lake = start_weed(tmp_path / "lake-s3", ["lake"])
    settings = settings_factory(s3_endpoint=f"http://127.0.0.1:{lake.port}", s3_bucket="lake",
                                flush_interval_s=1, sink_port=free_ports())
    topics = Topics.from_settings(settings)
    first = [event_factory(timestamp=datetime.now(timezone.utc)) for _ in range(40)]
    during = [event_factory(timestamp=datetime.now(timezone.utc)) for _ in range(60)]

    async def produce(events):
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for e in events:
                await producer.send_and_wait(topics.events, e.to_bytes(), key=e.visitor_id.encode())
        finally:
            await producer.stop()

    async def committed():
        return sum((await committed_offsets(settings, topics.group("sink"), [topics.events])).values())

    async def wait_committed(n, timeout):
        deadline = time.monotonic() + timeout
        while await committed() < n:
            assert time.monotonic() < deadline, f"sink committed {await committed()} of {n}"
            await asyncio.sleep(0.5)

    async def scenario():
        await create_topics(settings)
        stop = asyncio.Event()
        sink = asyncio.create_task(consume(settings, stop))
        try:
            await produce(first)
            await wait_committed(len(first), 60)
            lake.stop()  # the outage begins
            await produce(during)
            await asyncio.sleep(8)  # flushes are due and fail: nothing may be committed meanwhile
            assert await committed() == len(first)
            assert not sink.done()
            restarted = await asyncio.to_thread(start_weed, tmp_path / "lake-s3", ["lake"], lake.port,
                                                lake.other_ports)
            try:
                await wait_committed(len(first) + len(during), 120)
            finally:
                stop.set()
                await asyncio.wait_for(sink, 30)
            return restarted
        finally:
            stop.set()

    restarted = asyncio.run(scenario())
    try:
        total = len(first) + len(during)
        rows = run_query(connect(settings), "select count(*), count(distinct event_id) from events")[1]
        assert rows == [(total, total)]
    finally:
        restarted.stop()
