"""The Kafka side of pipeline health: consumer lag per group and the age of each topic's newest record.

:func:`read_kafka` talks to the broker (with a deadline, so an unreachable broker costs seconds,
not minutes); :func:`lag_table` and :func:`stage_warnings` are pure and say what the numbers mean.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from aiokafka import AIOKafkaConsumer, TopicPartition

from clickstream.kafka import committed_offsets
from clickstream.settings import Settings
from clickstream.topics import Topics


@dataclass(frozen=True)
class Stage:
    name: str  # what the stage does, for people
    group: str  # its consumer group (Topics.group(service))
    topics: tuple[str, ...]  # what it reads


def stages(topics: Topics) -> list[Stage]:
    """The consumers of the pipeline: the processor reads the API's events, the reactor the fired rules,
    the sink every topic that has a lake table."""
    return [
        Stage("stream processor (raw -> events, sessions, metrics, reactions)", topics.group("processor"),
              (topics.raw,)),
        Stage("reactor (reactions -> webhook)", topics.group("reactor"), (topics.reactions,)),
        Stage("lake sink (topics -> Parquet)", topics.group("sink"),
              (topics.events, topics.invalid, topics.sessions, topics.metrics, topics.reactions)),
    ]


@dataclass
class KafkaSnapshot:
    end_offsets: dict[tuple[str, int], int]
    committed: dict[str, dict[tuple[str, int], int]]  # group -> (topic, partition) -> offset
    newest: dict[str, datetime]  # topic -> timestamp of its newest record


async def _snapshot(settings: Settings, stage_list: list[Stage]) -> KafkaSnapshot:
    topics = Topics.from_settings(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                request_timeout_ms=4000, group_id=None)
    try:
        await consumer.start()
        await consumer.topics()
        partitions = [TopicPartition(t, p) for t in topics.all() for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        newest: dict[str, datetime] = {}
        if partitions:
            # The newest record of each partition: seek to the last offset and read. A broker may
            # report end offsets behind its log (Tansu with its log on S3 does); a fetch answers with
            # the true end (the high watermark), so read again from there when it is further on.
            consumer.assign(partitions)
            last_read: dict[TopicPartition, int] = {}
            for _ in range(2):
                for tp in partitions:
                    consumer.seek(tp, max(ends[tp] - 1, 0))
                for tp, records in (await consumer.getmany(timeout_ms=1500)).items():
                    for record in records:
                        at = datetime.fromtimestamp(record.timestamp / 1000, timezone.utc)
                        newest[tp.topic] = max(newest.get(tp.topic, at), at)
                        last_read[tp] = max(last_read.get(tp, -1), record.offset)
                moved = False
                for tp in partitions:
                    highwater = consumer.highwater(tp)
                    if highwater is not None and highwater > ends[tp]:
                        ends[tp], moved = highwater, True
                if not moved or all(last_read.get(tp, -1) >= ends[tp] - 1 for tp in partitions if ends[tp]):
                    break
        end_offsets = {(tp.topic, tp.partition): o for tp, o in ends.items()}
    finally:
        await consumer.stop()
    committed = {}
    for stage in stage_list:
        committed[stage.group] = await committed_offsets(settings, stage.group, list(stage.topics))
    return KafkaSnapshot(end_offsets, committed, newest)


def read_kafka(settings: Settings, timeout_s: float = 8.0) -> KafkaSnapshot:
    """End offsets, committed offsets of the pipeline's groups and newest record times; raises
    ``TimeoutError`` or a Kafka error when the broker cannot be reached within ``timeout_s``."""
    stage_list = stages(Topics.from_settings(settings))
    return asyncio.run(asyncio.wait_for(_snapshot(settings, stage_list), timeout_s))


def lag_table(snapshot: KafkaSnapshot, stage_list: list[Stage]) -> pd.DataFrame:
    """One row per stage and topic: end offset, committed offset and lag (records not yet consumed).

    A partition the group never committed counts from 0: all its records are lag.
    """
    rows = []
    for stage in stage_list:
        committed = snapshot.committed.get(stage.group, {})
        for topic in stage.topics:
            parts = [p for (t, p) in snapshot.end_offsets if t == topic]
            end = sum(snapshot.end_offsets[(topic, p)] for p in parts)
            done = sum(min(committed.get((topic, p), 0), snapshot.end_offsets[(topic, p)]) for p in parts)
            rows.append({"stage": stage.name, "group": stage.group, "topic": topic, "end_offset": end,
                         "committed": done, "lag": end - done,
                         "never_committed": end > 0 and not any((topic, p) in committed for p in parts)})
    return pd.DataFrame(rows, columns=["stage", "group", "topic", "end_offset", "committed", "lag", "never_committed"])


def stage_warnings(lag: pd.DataFrame, newest: dict[str, datetime], now: datetime, lake_age_s: float | None,
                   raw_topic: str, stall_after_s: float = 120.0) -> list[str]:
    """What looks stalled, in words.

    * a group with lag whose input's newest record is older than ``stall_after_s``: records have
      waited that long without being consumed, so the consumer is not moving;
    * a group that never committed on a topic holding records;
    * the lake's newest event older than ``stall_after_s`` while events still enter ``raw_topic``.
    """
    warnings = []
    for row in lag.itertuples(index=False):
        if row.never_committed:
            warnings.append(f"{row.stage}: group {row.group} has never committed on {row.topic} "
                            f"({row.end_offset:,} records waiting). Is it running?")
            continue
        at = newest.get(row.topic)
        if row.lag > 0 and at is not None and (now - at).total_seconds() > stall_after_s:
            warnings.append(f"{row.stage}: stalled on {row.topic}, {row.lag:,} records behind and the newest "
                            f"is {(now - at).total_seconds():,.0f} s old")
    if raw_topic in newest and lake_age_s is not None and lake_age_s > stall_after_s:
        raw_age = (now - newest[raw_topic]).total_seconds()
        if raw_age < lake_age_s - stall_after_s:
            warnings.append(f"lake: the newest event in the lake is {lake_age_s:,.0f} s old while the API "
                            f"accepted one {raw_age:,.0f} s ago; the sink or processor is not delivering")
    return warnings
