"""The sharded producer: records go through the producer their key picks, and a request is
acknowledged only once every producer it used acknowledged its part."""

import asyncio

import pytest

from ingest_api.errors import BrokerUnavailable
from ingest_api.producer import ShardedEventProducer


class Recording:
    def __init__(self, fail=False):
        self.sent, self.fail, self.stopped = [], fail, False

    async def send_many(self, records):
        if self.fail:
            raise BrokerUnavailable("no broker")
        self.sent.append(list(records))

    async def ready(self, topic):
        return not self.fail

    async def stop(self):
        self.stopped = True


def sharded(count, fail_at=()):
    made = []

    def make():
        made.append(Recording(fail=len(made) in fail_at))
        return made[-1]

    return ShardedEventProducer(make, count), made


def test_each_key_always_takes_the_same_producer_and_order_within_a_key_is_kept():
    producer, shards = sharded(3)
    records = [("raw", f"device-{i % 7}", str(i).encode()) for i in range(70)]
    asyncio.run(producer.send_many(records[:60]))
    for record in records[60:]:  # single records take a short path, to the same producers
        asyncio.run(producer.send_many([record]))
    by_key = {}
    for index, shard in enumerate(shards):
        for batch in shard.sent:
            for _, key, value in batch:
                by_key.setdefault(key, []).append((index, int(value)))
    assert sum(len(v) for v in by_key.values()) == 70
    for key, sends in by_key.items():
        assert len({index for index, _ in sends}) == 1, key  # one producer per key
        assert [v for _, v in sends] == sorted(v for _, v in sends)
    assert len([s for s in shards if s.sent]) > 1  # seven keys spread over more than one producer


def test_a_failing_producer_fails_the_request_and_readiness():
    producer, shards = sharded(2, fail_at=(1,))
    keys = [f"k{i}" for i in range(20)]
    with pytest.raises(BrokerUnavailable):
        asyncio.run(producer.send_many([("raw", k, b"x") for k in keys]))
    assert asyncio.run(producer.ready("raw")) is False
    asyncio.run(producer.stop())
    assert all(s.stopped for s in shards)


def test_one_producer_and_empty_sends():
    producer, [shard] = sharded(1)
    asyncio.run(producer.send_many([]))
    asyncio.run(producer.send_many([("raw", "a", b"1"), ("raw", "b", b"2")]))
    assert shard.sent == [[("raw", "a", b"1"), ("raw", "b", b"2")]]
    with pytest.raises(ValueError):
        ShardedEventProducer(Recording, 0)
