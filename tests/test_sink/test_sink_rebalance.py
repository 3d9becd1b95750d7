"""Two sinks in one group on the real broker and S3 server: a partition that a rebalance moves while
its flush uploads is written once. The sink that loses it finishes the upload (and commits) before
the group hands the partition over, and the sink that gets it lists the lake again."""

import asyncio
import json
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from clickstream.kafka import create_topics
from query.engine import connect, run_query
from sink.destination import LakeDestination
from sink.main import consume

from test_sink.test_sink_integration import committed, produce

pytestmark = pytest.mark.integration

T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)


class LakeInTheWay:
    """The lake, with its uploads changed by a subclass's ``put``; the rest as it is."""

    def __init__(self, lake: LakeDestination):
        self.lake = lake

    def __getattr__(self, name):
        return getattr(self.lake, name)


class HeldUploads(LakeInTheWay):
    """The lake, with uploads of the events table held until released: a slow upload."""

    def __init__(self, lake: LakeDestination):
        super().__init__(lake)
        self.started, self.release = threading.Event(), threading.Event()

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("events/"):
            self.started.set()
            self.release.wait(60)
        self.lake.put(key, data)


def test_a_partition_moved_while_its_flush_uploads_is_written_once(settings_factory, event_factory, free_ports):
    first, second = 80, 80
    n = first + second
    # Event times in three hours, interleaved in offset order, so that each flush writes an object
    # per hour and differently cut flushes of the same records give different objects.
    events = [event_factory(timestamp=T0 + timedelta(hours=i % 3, minutes=i % 60), anonymous_id=f"v{i % 17}")
              for i in range(n)]
    settings_a = settings_factory(flush_interval_s=1, sink_port=free_ports())
    settings_b = settings_a.model_copy(update={"sink_port": free_ports()})
    lake = LakeDestination.from_settings(settings_a)
    held = HeldUploads(lake)

    def events_objects() -> list[str]:
        return lake.list_keys("events/")

    async def scenario():
        await create_topics(settings_a)
        await produce(settings_a, events[:first])
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        sink_a = asyncio.create_task(consume(settings_a, stop_a, held))
        try:
            # Sink A owns every partition and is uploading its first flush...
            deadline = time.monotonic() + 60
            while not held.started.is_set():
                assert time.monotonic() < deadline, "sink A never flushed"
                assert not sink_a.done(), sink_a.exception()
                await asyncio.sleep(0.1)
            # ...when more events arrive and a second sink joins the group.
            await produce(settings_a, events[first:])
            sink_b = asyncio.create_task(consume(settings_b, stop_b))
            try:
                # A rebalance that does not wait for A's upload lets B write the partitions it gets
                # meanwhile. Hold the upload until B has written or for long enough that it would have.
                deadline = time.monotonic() + 12
                while not events_objects() and time.monotonic() < deadline:
                    assert not sink_b.done(), sink_b.exception()
                    await asyncio.sleep(0.2)
                held.release.set()
                deadline = time.monotonic() + 60
                while sum((await committed(settings_a)).values()) < n:
                    assert time.monotonic() < deadline, "the sinks did not commit every event"
                    assert not sink_a.done() and not sink_b.done()
                    await asyncio.sleep(0.5)
                # The rebalance did happen while A uploaded, and waited for it.
                health = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(
                    f"http://127.0.0.1:{settings_a.sink_port}/health", timeout=5)))
                assert health["flushes_finished_before_rebalance"] >= 1, health
                assert health["rebalance_wait_s"] > 1, health
            finally:
                stop_b.set()
                await asyncio.wait_for(sink_b, 30)
        finally:
            held.release.set()
            stop_a.set()
            await asyncio.wait_for(sink_a, 30)

    asyncio.run(scenario())
    con = connect(settings_a)
    assert run_query(con, "select count(*), count(distinct event_id) from events")[1] == [(n, n)]
    # Not only what readers see (they skip an object whose offsets another covers): no object holds
    # a record that another holds too.
    physical = run_query(con, f"select count(*) from read_parquet('s3://{settings_a.s3_bucket}/events/*/*/*.parquet')")[1]
    assert physical == [(n,)], events_objects()


class OneUploadFails(LakeInTheWay):
    """The lake, where the first upload of events of partition 0 fails for good and the other
    partitions' uploads are slow."""

    def __init__(self, lake: LakeDestination):
        super().__init__(lake)
        self.slow_started = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("events/") and "/events-p0-" in key:
            time.sleep(1.5)  # the other partitions' flushes, due within a fetch or two, are uploading by now
            raise RuntimeError("the disk is on fire")
        if key.startswith("events/"):
            self.slow_started.set()
            time.sleep(3)
        self.lake.put(key, data)


def test_a_sink_stopped_by_a_failed_upload_lets_its_other_uploads_land_before_it_leaves(
        settings_factory, event_factory, free_ports):
    """Otherwise they would land after the next owner of their partitions listed the lake."""
    n = 40
    events = [event_factory(timestamp=T0 + timedelta(minutes=i), anonymous_id=f"v{i}") for i in range(n)]
    settings = settings_factory(flush_interval_s=1, sink_port=free_ports())
    lake = LakeDestination.from_settings(settings)
    failing = OneUploadFails(lake)

    async def scenario():
        await create_topics(settings)
        await produce(settings, events)
        with pytest.raises(RuntimeError, match="on fire"):
            await asyncio.wait_for(consume(settings, asyncio.Event(), failing), 60)
        return lake.list_keys("events/")

    written = asyncio.run(scenario())
    assert failing.slow_started.is_set()
    partitions = {key.rsplit("/", 1)[1].split("-")[1] for key in written}
    assert partitions and "p0" not in partitions  # every other partition's object landed before consume returned
    assert len(partitions) == settings.topic_partitions - 1, written
