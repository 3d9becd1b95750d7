"""How the sink shares its group consumer's partitions with its helper consumers, without Kafka:
which consumer fetches which partition, where a helper starts, and what a rebalance undoes."""

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from clickstream.settings import Settings
from clickstream.topics import Topics
from sink.main import LakeSink, SplitReading

EVENTS, INVALID = "t.events", "t.invalid"


class Group:
    """The group consumer's side: pauses, resumes and committed offsets."""

    def __init__(self, committed):
        self.committed_offsets, self.paused, self.looked_up_while_unpaused = committed, set(), []

    def pause(self, *tps):
        self.paused |= set(tps)

    def resume(self, *tps):
        self.paused -= set(tps)

    async def committed(self, tp):
        if tp not in self.paused:
            self.looked_up_while_unpaused.append(tp)
        if isinstance(self.committed_offsets, Exception):
            raise self.committed_offsets
        return self.committed_offsets.get(tp)


class Helper:
    def __init__(self):
        self.assigned, self.seeks = None, {}

    def assign(self, tps):
        self.assigned = sorted(tps)

    def seek(self, tp, offset):
        self.seeks[tp] = offset


def new_sink() -> LakeSink:
    return LakeSink(Settings(_env_file=None), None, None)


def partitions():
    return {TopicPartition(EVENTS, p) for p in range(4)} | {TopicPartition(INVALID, p) for p in range(2)}


def test_a_helper_fetches_every_other_partition_from_the_groups_committed_offset():
    group = Group({TopicPartition(EVENTS, 1): 500, TopicPartition(EVENTS, 3): 70})
    helper = Helper()
    asyncio.run(SplitReading(new_sink(), group, [helper]).on_partitions_assigned(partitions()))

    ordered = sorted(partitions())
    assert helper.assigned == ordered[1::2]  # events 1 and 3, invalid 1
    assert group.paused == set(ordered[1::2])  # the group consumer fetches the rest
    assert group.looked_up_while_unpaused == []  # paused before any await
    # A partition without a committed offset starts where the consumer's reset policy says (earliest).
    assert helper.seeks == {TopicPartition(EVENTS, 1): 500, TopicPartition(EVENTS, 3): 70}


def test_two_helpers_and_the_group_consumer_share_the_partitions():
    group, helpers = Group({}), [Helper(), Helper()]
    asyncio.run(SplitReading(new_sink(), group, helpers).on_partitions_assigned(partitions()))
    ordered = sorted(partitions())
    assert [h.assigned for h in helpers] == [ordered[1::3], ordered[2::3]]
    assert set(ordered) - group.paused == set(ordered[0::3])


def test_without_committed_offsets_the_group_consumer_fetches_everything():
    group, helper = Group(KafkaConnectionError()), Helper()
    asyncio.run(SplitReading(new_sink(), group, [helper]).on_partitions_assigned(partitions()))
    assert helper.assigned is None and group.paused == set()


def test_a_rebalance_takes_the_helpers_partitions_and_the_sinks_buffers():
    settings = Settings(_env_file=None)
    sink = LakeSink(settings, None, None)
    sink.buffers[TopicPartition(EVENTS, 1)] = object()
    helper = Helper()
    helper.assigned = [TopicPartition(EVENTS, 1)]
    asyncio.run(SplitReading(sink, Group({}), [helper]).on_partitions_revoked({TopicPartition(EVENTS, 1)}))
    assert helper.assigned == [] and sink.buffers == {}


def test_one_consumer_reads_alone():
    group = Group({})
    asyncio.run(SplitReading(new_sink(), group, []).on_partitions_assigned(partitions()))
    assert group.paused == set()


def test_a_rebalance_taking_partition_0_of_the_events_topic_waits_for_the_compaction_pass():
    """Its next holder compacts next; two passes planned from different listings would merge
    overlapping sets of objects."""
    from sink.maintenance import PassInProgress

    sink = new_sink()
    leader = TopicPartition(Topics.from_settings(sink.settings).events, 0)
    other = TopicPartition(Topics.from_settings(sink.settings).events, 1)

    async def run():
        compaction = PassInProgress()
        finished = asyncio.Event()

        async def a_pass():
            await asyncio.sleep(0.2)
            finished.set()

        compaction.task = asyncio.ensure_future(a_pass())
        reading = SplitReading(sink, Group({}), [], compaction)
        await reading.on_partitions_revoked({other})
        assert not finished.is_set()  # not the leader partition: no waiting
        await reading.on_partitions_revoked({leader, other})
        assert finished.is_set()

    asyncio.run(run())
