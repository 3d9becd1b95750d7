"""The sink's periodic compaction: who runs it, when, and what a failed pass does."""

import asyncio
from collections import Counter

from aiokafka import TopicPartition

import sink.maintenance as maintenance
from clickstream.settings import Settings
from sink.compaction import CompactionReport


class Group:
    """What the pass looks at of the sink's group consumer: the partitions assigned to it."""

    def __init__(self, *partitions):
        self.partitions = set(partitions)

    def assignment(self):
        return self.partitions


def run_ticks(monkeypatch, group, outcome, *, until=None, seconds=0.2):
    """Run the pass every 20 ms until ``until(calls, stats)`` holds (or for ``seconds``)."""
    calls = []

    async def committed(settings):
        return {("events", 0): 10}

    def compact_lake(settings, committed, **options):
        calls.append(committed)
        return outcome(len(calls))

    monkeypatch.setattr(maintenance, "sink_committed", committed)
    monkeypatch.setattr(maintenance, "compact_lake", compact_lake)
    settings = Settings(_env_file=None, compact_interval_s=0.02)
    stats = Counter()

    async def go():
        stop = asyncio.Event()
        task = asyncio.create_task(maintenance.compact_periodically(settings, group, stop, stats))
        if until is None:
            await asyncio.sleep(seconds)
        else:
            for _ in range(500):
                if until(calls, stats):
                    break
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 1)

    asyncio.run(go())
    return calls, stats


def test_only_the_member_holding_partition_0_of_the_events_topic_compacts(monkeypatch):
    calls, _ = run_ticks(monkeypatch, Group(TopicPartition("clickstream.events", 1)), lambda n: CompactionReport())
    assert calls == []  # ten ticks, none of them its turn
    calls, stats = run_ticks(monkeypatch, Group(TopicPartition("clickstream.events", 0)),
                             lambda n: CompactionReport(merged_objects=1, merged_from=4, rows=9),
                             until=lambda calls, stats: stats["compactions"] >= 3)
    assert calls[0] == {("events", 0): 10}  # merged only below the sink's committed offsets
    assert stats["compactions"] == len(calls) >= 3 and stats["objects_merged"] == 4 * len(calls)


def test_a_member_waits_a_tick_with_partition_0_before_its_first_pass(monkeypatch):
    group = Group(TopicPartition("clickstream.events", 0))
    ticks = []
    assigned = group.assignment
    group.assignment = lambda: ticks.append(1) or assigned()  # counts the ticks
    calls, _ = run_ticks(monkeypatch, group, lambda n: CompactionReport(),
                         until=lambda calls, stats: stats["compactions"] >= 2)
    assert len(calls) == len(ticks) - 1  # every tick but the first compacted


def test_a_failed_pass_is_counted_and_the_next_tick_tries_again(monkeypatch):
    def outcome(n):
        if n == 1:
            raise OSError("the lake is unreachable")
        if n == 2:
            raise maintenance.LakeBusy("another run holds the lock")
        return CompactionReport()

    calls, stats = run_ticks(monkeypatch, Group(TopicPartition("clickstream.events", 0)), outcome,
                             until=lambda calls, stats: stats["compactions"] >= 1)
    assert stats["compaction_errors"] == 1 and stats["compactions_skipped"] == 1
    assert stats["compactions"] == len(calls) - 2 >= 1


def test_the_pass_in_progress_is_there_for_a_rebalance_to_wait_for(monkeypatch):
    import threading

    release, seen = threading.Event(), []

    async def committed(settings):
        return {}

    def compact_lake(settings, committed, **options):
        release.wait(5)
        return CompactionReport()

    monkeypatch.setattr(maintenance, "sink_committed", committed)
    monkeypatch.setattr(maintenance, "compact_lake", compact_lake)
    settings = Settings(_env_file=None, compact_interval_s=0.02)
    in_progress, stats = maintenance.PassInProgress(), Counter()

    async def go():
        stop = asyncio.Event()
        task = asyncio.create_task(maintenance.compact_periodically(
            settings, Group(TopicPartition("clickstream.events", 0)), stop, stats, in_progress))
        while in_progress.task is None:
            await asyncio.sleep(0.01)
        seen.append(in_progress.task.done())
        waiting = asyncio.create_task(in_progress.finish())
        await asyncio.sleep(0.1)
        seen.append(waiting.done())  # the pass still runs
        release.set()
        await asyncio.wait_for(waiting, 2)
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(go())
    assert seen == [False, False] and stats["compactions"] >= 1
