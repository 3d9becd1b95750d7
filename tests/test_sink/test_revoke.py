"""A partition revoked while its flush uploads: the upload completes, nothing is committed for it,
and the sink goes on (its next owner skips the records these objects hold)."""

import asyncio
from collections import namedtuple
from datetime import datetime, timezone

from aiokafka import TopicPartition

from clickstream.events import Event
from clickstream.settings import Settings
from clickstream.topics import Topics
from sink.main import LakeSink

Record = namedtuple("Record", "topic partition offset value")


class Consumer:
    def __init__(self):
        self.commits = []

    async def commit(self, offsets):
        self.commits.append(offsets)


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
    settings = Settings(_env_file=None, flush_interval_s=1)
    topic = Topics.from_settings(settings).events
    consumer, lake = Consumer(), RevokingLake()
    sink = lake.sink = LakeSink(settings, consumer, lake)
    now = datetime.now(timezone.utc)
    events = [Event(event_id=f"e{i}", type="page", anonymous_id="a", timestamp=now, received_at=now, source="demo")
              for i in range(3)]
    lake.revoke = TopicPartition(topic, 0)

    async def run():
        for offset, event in enumerate(events):
            await sink.add(Record(topic, 0, offset, event.to_bytes()))
        await sink.add(Record(topic, 1, 0, events[0].model_copy(update={"event_id": "x"}).to_bytes()))
        await sink.flush_due(force=True)

    asyncio.run(run())
    assert len(lake.objects) == 2  # both partitions' objects written
    assert consumer.commits == [{TopicPartition(topic, 1): 1}]  # only the partition still owned
    assert TopicPartition(topic, 0) not in sink.buffers
