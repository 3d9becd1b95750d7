"""SIGKILL the sink (the real `clickstream sink` process) again and again while it writes: after it
recovers, every event produced is in the lake exactly once."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from clickstream.kafka import committed_offsets, create_topics
from clickstream.topics import Topics
from query.engine import connect, run_query

pytestmark = pytest.mark.integration

T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)


def test_sink_killed_mid_flush_loses_and_duplicates_nothing(settings_factory, event_factory, free_ports, tmp_path):
    # Time-cut flushes: a restarted sink reads the backlog at once and cuts it differently, so
    # without its check of what is already stored it would write those rows a second time.
    settings = settings_factory(flush_interval_s=1, sink_port=free_ports())
    topics = Topics.from_settings(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    n_batches, per_batch = 4, 300
    shuffle = random.Random(3)
    # Event times jump between four hours, so every flush writes an object per hour and each
    # hour's records interleave with the others' in offset order: a different cut after a
    # restart gives different objects.
    events = [event_factory(timestamp=T0 + timedelta(hours=shuffle.randrange(4), minutes=shuffle.randrange(60)),
                            anonymous_id=f"v{i % 13}") for i in range(n_batches * per_batch)]

    async def produce(chunk):
        """Trickle the events in over about 2.5 s, so flushes cut the stream at time boundaries."""
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for i in range(0, len(chunk), 25):
                await asyncio.gather(*[await producer.send(topics.events, e.to_bytes(), key=e.visitor_id.encode())
                                       for e in chunk[i:i + 25]])
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()

    asyncio.run(create_topics(settings))
    log = open(tmp_path / "sink.log", "ab")

    def start():
        return subprocess.Popen([sys.executable, "-m", "clickstream", "sink"], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)

    def uploads() -> int:
        return (tmp_path / "sink.log").read_text().count("wrote events/")

    rng = random.Random(7)
    kills = 0
    sink = start()
    try:
        for b in range(n_batches):
            target = uploads() + rng.randint(2, 10)
            producing = threading.Thread(target=asyncio.run,
                                         args=(produce(events[b * per_batch:(b + 1) * per_batch]),))
            producing.start()
            # Kill right after the k-th new upload, while events still arrive: a flush writes one
            # object per hour and commits after the last, so this lands between the objects of a
            # flush or before its commit.
            deadline = time.monotonic() + 30
            while uploads() < target and time.monotonic() < deadline:
                time.sleep(0.002)
            sink.send_signal(signal.SIGKILL)
            producing.join()
            sink.wait()
            kills += 1
            sink = start()

        def all_committed():
            offsets = asyncio.run(committed_offsets(settings, topics.group("sink"), [topics.events]))
            return sum(offsets.values()) == len(events)

        deadline = time.monotonic() + 90
        while not all_committed():
            assert time.monotonic() < deadline, (tmp_path / "sink.log").read_text()[-3000:]
            assert sink.poll() is None, (tmp_path / "sink.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        sink.terminate()
        sink.wait(20)
    rows = run_query(connect(settings), "select count(*), count(distinct event_id) from events")[1]
    assert kills == n_batches
    assert rows == [(len(events), len(events))]
    # Not only what readers see: no object the sink wrote holds a row that another holds too
    # (readers would hide an object whose offset range another covers; the sink must not rely on it).
    physical = run_query(connect(settings), f"select count(*) from read_parquet('s3://{settings.s3_bucket}/events/*/*/*.parquet')")[1]
    assert physical == [(len(events),)]
    log_text = (tmp_path / "sink.log").read_text()
    assert "wrote events/" in log_text  # the runs did write before being killed
