"""Reading back what the processor wrote: its state topics (compacted Kafka topics, one record per
key, read in full when a worker takes a partition over) and the tail of an output partition.

Faust's own table recovery stops at the end offset the broker reports when recovery starts;
against a broker that reports it late (Tansu keeping its log on S3 does) a worker would start
from part of its state. Reading on until the partition has stayed quiet past that offset does
not depend on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic_core import from_json, to_json

# How long a state partition must stay quiet, after its reported end, to count as read.
QUIET_S = 1.0
# ... and over this many empty fetches at least: while the worker loads several partitions side by
# side, decoding one can hold the event loop for seconds, and a second of clock without a single
# fetch in it is not a quiet topic (a restarted worker once stopped reading its checkpoints early).
QUIET_POLLS = 5


def encode(value: Any) -> bytes | None:
    return None if value is None else to_json(value)


async def read_partition(bootstrap_servers: str, topic: str, partition: int, *, timeout_s: float = 120.0
                         ) -> dict[str, Any]:
    """Latest value of every live key in one partition of a state topic (tombstones remove keys)."""
    state: dict[str, Any] = {}

    def take(record) -> None:
        key = record.key.decode()
        if record.value is None:
            state.pop(key, None)
        else:
            state[key] = from_json(record.value)

    await read_from(bootstrap_servers, topic, partition, None, take, timeout_s=timeout_s)
    return state


async def read_values(bootstrap_servers: str, topic: str, partition: int, offset: int, *,
                      timeout_s: float = 120.0) -> list[Any]:
    """The decoded values of one partition from ``offset`` on (what a worker sent after its last checkpoint)."""
    values: list[Any] = []
    await read_from(bootstrap_servers, topic, partition, offset,
                    lambda record: values.append(from_json(record.value)), timeout_s=timeout_s)
    return values


async def read_from(bootstrap_servers: str, topic: str, partition: int, offset: int | None,
                    take: Callable[[Any], None], *, timeout_s: float) -> None:
    """Every record of one partition from ``offset`` (None: the beginning) until it stayed quiet past its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        if offset is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + timeout_s
        quiet_since, empty_polls = time.monotonic(), 0
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=200)
            records = batch.get(tp, [])
            for record in records:
                take(record)
            if records:
                quiet_since, empty_polls = time.monotonic(), 0
                continue
            empty_polls += 1
            if await consumer.position(tp) >= end and time.monotonic() - quiet_since >= QUIET_S \
                    and empty_polls >= QUIET_POLLS:
                break
        else:
            raise TimeoutError(f"reading {topic}[{partition}] took over {timeout_s:.0f} s")
    finally:
        await consumer.stop()


async def partition_counts(bootstrap_servers: str, topics: list[str]) -> dict[str, int]:
    """How many partitions each topic has (0 for one the broker does not know)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata of every topic
        return {topic: len(consumer.partitions_for_topic(topic) or ()) for topic in topics}
    finally:
        await consumer.stop()
