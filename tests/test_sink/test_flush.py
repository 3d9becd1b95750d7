"""The sink's flush without Kafka or S3: which rows it writes, what it commits, and a partition
revoked while its flush uploads (the upload completes, nothing is committed for it, and its next
owner skips the records these objects hold)."""

import asyncio
from collections import namedtuple
from datetime import datetime, timezone

import pytest
from aiokafka import TopicPartition

from clickstream.events import Event
from clickstream.settings import Settings
from clickstream.topics import Topics
from sink.main import LakeSink

Record = namedtuple("Record", "topic partition offset value")


def page_views(at: datetime, n: int) -> list[bytes]:
    """``n`` encoded page views of one device at one instant."""
    return [Event(event_id=f"e{i}", type="page", anonymous_id="a", timestamp=at, received_at=at,
                  source="demo").to_bytes() for i in range(n)]


class Consumer:
    def __init__(self):
        self.commits = []

    async def commit(self, offsets):
        self.commits.append(offsets)


def sink_writing_to(lake) -> tuple[LakeSink, Consumer, Topics]:
    """A sink flushing every second into ``lake``, with a consumer that records its commits."""
    settings = Settings(_env_file=None, flush_interval_s=1)
    consumer = Consumer()
    return LakeSink(settings, consumer, lake), consumer, Topics.from_settings(settings)


class RevokingLake:
    """Stores objects in memory; the first upload revokes the partition, as a rebalance would."""

    def __init__(self):
        self.objects, self.sink, self.revoke = {}, None, None

    def list_keys(self, prefix):
        return [k for k in self.objects if k.startswith(prefix)]

    def put(self, key, data):
        self.objects[key] = data
        if self.revoke:
            self.sink.drop([self.revoke])
            self.revoke = None


def test_a_partition_revoked_during_its_upload_is_not_committed():
    lake = RevokingLake()
    sink, consumer, topics = sink_writing_to(lake)
    lake.sink = sink
    topic = topics.events
    now = datetime.now(timezone.utc)
    events = [Event(event_id=f"e{i}", type="page", anonymous_id="a", timestamp=now, received_at=now, source="demo")
              for i in range(3)]
    lake.revoke = TopicPartition(topic, 0)

    async def run():
        sink.add_all(TopicPartition(topic, 0), [Record(topic, 0, o, e.to_bytes()) for o, e in enumerate(events)])
        other = events[0].model_copy(update={"event_id": "x"})
        sink.add_all(TopicPartition(topic, 1), [Record(topic, 1, 0, other.to_bytes())])
        await sink.flush_due(force=True)

    asyncio.run(run())
    assert len(lake.objects) == 2  # both partitions' objects written
    assert consumer.commits == [{TopicPartition(topic, 1): 1}]  # only the partition still owned
    assert TopicPartition(topic, 0) not in sink.buffers


@pytest.mark.parametrize("broken", [False, True], ids=["vectorised", "per-record"])
def test_a_flush_keeps_each_record_once_and_names_what_it_cannot_decode(broken):
    """Repeats and rows an earlier run stored in one flush, decoded in one step or, with an
    undecodable record among them, record by record."""
    import io

    import pyarrow.parquet as pq

    lake = RevokingLake()
    sink, consumer, topics = sink_writing_to(lake)
    topic = topics.events
    nine = datetime(2026, 11, 27, 9, 59, 59, 999999, tzinfo=timezone.utc)
    ten = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)

    def event(i, t):
        return Event(event_id=f"e{i}", type="page", anonymous_id="a", timestamp=t, received_at=t, source="demo")

    # An earlier run stored offsets 0-1 of hour 09 and did not commit.
    lake.objects["events/dt=2026-11-27/hour=09/events-p0-0-1.parquet"] = b""
    values = [event(0, nine), event(1, nine), event(2, ten), event(0, nine), event(3, nine), event(2, ten)]
    values = [v.to_bytes() for v in values]
    if broken:
        values.insert(4, b'{"event_id": "broken"}')

    async def run():
        sink.add_all(TopicPartition(topic, 0), [Record(topic, 0, offset, value) for offset, value in enumerate(values)])
        await sink.flush_due(force=True)

    asyncio.run(run())
    written = {key: pq.read_table(io.BytesIO(data)).column("event_id").to_pylist()
               for key, data in lake.objects.items() if data}
    e3 = 5 if broken else 4
    assert written == {"events/dt=2026-11-27/hour=10/events-p0-2-2.parquet": ["e2"],
                       f"events/dt=2026-11-27/hour=09/events-p0-{e3}-{e3}.parquet": ["e3"]}
    assert (sink.stats["skipped_already_stored"], sink.stats["repeats_dropped"]) == (2, 2)
    assert sink.stats["undecodable"] == int(broken)
    assert consumer.commits == [{TopicPartition(topic, 0): len(values)}]


class SlowLake(RevokingLake):
    def __init__(self, delay_s=0.2):
        super().__init__()
        self.delay_s = delay_s

    def put(self, key, data):
        import time

        time.sleep(self.delay_s)
        super().put(key, data)


def test_records_read_while_a_flush_uploads_go_to_the_next_flush_and_commits_keep_their_order():
    lake = SlowLake()
    sink, consumer, topics = sink_writing_to(lake)
    topic = topics.events
    now = datetime.now(timezone.utc)
    values = page_views(now, 6)
    tp = TopicPartition(topic, 0)

    async def run():
        sink.add_all(tp, [Record(topic, 0, offset, values[offset]) for offset in range(3)])
        await sink.flush_due(force=False)  # not due yet: nothing starts
        assert not sink._flushing
        sink.buffers[tp].opened_at -= 60
        await sink.flush_due()  # due: starts in the background and returns
        assert sink.status()["flushing"] and consumer.commits == []
        sink.add_all(tp, [Record(topic, 0, offset, values[offset]) for offset in range(3, 6)])
        assert sink.status()["buffered_rows"] == 3
        await sink.flush_due(force=True)

    asyncio.run(run())
    assert consumer.commits == [{tp: 3}, {tp: 6}]
    assert sorted(lake.objects) == [k.format(d=now) for k in ("events/dt={d:%Y-%m-%d}/hour={d:%H}/events-p0-0-2.parquet",
                                                              "events/dt={d:%Y-%m-%d}/hour={d:%H}/events-p0-3-5.parquet")]


def test_a_failed_background_flush_stops_the_sink():
    class BrokenLake(RevokingLake):
        def put(self, key, data):
            raise RuntimeError("disk on fire")

    sink, consumer, topics = sink_writing_to(BrokenLake())
    topic = topics.events
    now = datetime.now(timezone.utc)
    value = Event(event_id="e", type="page", anonymous_id="a", timestamp=now, received_at=now, source="demo").to_bytes()

    async def run():
        sink.add_all(TopicPartition(topic, 0), [Record(topic, 0, 0, value)])
        sink.buffers[TopicPartition(topic, 0)].opened_at -= 60
        await sink.flush_due()
        await asyncio.sleep(0.5)
        await sink.flush_due()

    with pytest.raises(RuntimeError, match="disk on fire"):
        asyncio.run(run())
    assert consumer.commits == []


def test_a_rejected_event_left_twice_by_a_retried_produce_is_stored_once():
    import io

    import pyarrow.parquet as pq

    from clickstream.events import RejectedEvent

    lake = RevokingLake()
    sink, consumer, topics = sink_writing_to(lake)
    topic = topics.invalid
    t = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
    first = RejectedEvent(received_at=t, source="web", reason="no event name", payload="{}", endpoint="batch",
                          index=0, request_id="r1")
    # The same call rejected again a microsecond later (a client's retry) is another rejection.
    again = first.model_copy(update={"received_at": t.replace(microsecond=1)})
    values = [first.to_bytes(), first.to_bytes(), again.to_bytes()]

    async def run():
        sink.add_all(TopicPartition(topic, 0), [Record(topic, 0, offset, value) for offset, value in enumerate(values)])
        await sink.flush_due(force=True)

    asyncio.run(run())
    [data] = lake.objects.values()
    assert pq.read_table(io.BytesIO(data)).column("received_at").to_pylist() == [first.received_at, again.received_at]
    assert sink.stats["repeats_dropped"] == 1


def test_a_rebalance_hands_a_partition_over_only_after_its_upload_and_commit():
    lake = SlowLake()
    lake.delay_s = 0.3
    sink, consumer, topics = sink_writing_to(lake)
    topic = topics.events
    now = datetime.now(timezone.utc)
    values = page_views(now, 5)
    moved, kept = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def run():
        sink.add_all(moved, [Record(topic, 0, offset, values[offset]) for offset in range(3)])
        sink.buffers[moved].opened_at -= 60
        await sink.flush_due()  # uploading in the background
        sink.add_all(moved, [Record(topic, 0, 3, values[3])])  # buffered, in no object yet
        sink.add_all(kept, [Record(topic, 1, 0, values[4])])
        await sink.hand_over([moved])
        # The upload landed and was committed before the partition went; the buffered record was
        # not, and is left for the next owner to read.
        assert list(lake.objects) == [f"events/dt={now:%Y-%m-%d}/hour={now:%H}/events-p0-0-2.parquet"]
        assert consumer.commits == [{moved: 3}]
        assert moved not in sink.buffers and kept in sink.buffers
        assert sink.status()["flushes_finished_before_rebalance"] == 1
        assert sink.status()["rebalance_wait_s"] > 0.1  # the upload took 0.3 s

    asyncio.run(run())


def test_a_sink_lists_the_lake_again_for_partitions_it_is_assigned():
    """The previous owner of a partition may have uploaded objects after this sink listed an hour."""
    from sink.main import SplitReading

    lake = RevokingLake()
    sink, consumer, topics = sink_writing_to(lake)
    topic = topics.events
    now = datetime.now(timezone.utc)
    hour = f"events/dt={now:%Y-%m-%d}/hour={now:%H}"
    values = page_views(now, 4)
    tp = TopicPartition(topic, 1)

    async def run():
        sink.add_all(TopicPartition(topic, 0), [Record(topic, 0, 0, values[0])])
        await sink.flush_due(force=True)  # lists the hour, writes partition 0's object
        # Another sink, owning partition 1, uploads its records 0-1 and dies before committing.
        lake.objects[f"{hour}/events-p1-0-1.parquet"] = b""
        await SplitReading(sink, consumer, []).on_partitions_assigned({tp})
        sink.add_all(tp, [Record(topic, 1, offset, values[1 + offset]) for offset in range(3)])
        await sink.flush_due(force=True)

    asyncio.run(run())
    assert sorted(lake.objects) == [f"{hour}/events-p0-0-0.parquet", f"{hour}/events-p1-0-1.parquet",
                                    f"{hour}/events-p1-2-2.parquet"]
    assert sink.stats["skipped_already_stored"] == 2


def test_a_cancelled_wait_for_the_flushes_leaves_them_running():
    """A sink stopped in the middle of a rebalance still waits for them before it leaves the group."""
    sink, _, topics = sink_writing_to(SlowLake())
    tp = TopicPartition(topics.events, 0)

    async def run():
        flush = sink._flushing[tp] = asyncio.ensure_future(asyncio.sleep(0.3))
        waiting = asyncio.ensure_future(sink.hand_over([tp]))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.sleep(0.01)
        assert not flush.done()
        assert await sink.finish_flushes(why="before leaving the group") == 1 and flush.done()

    asyncio.run(run())
