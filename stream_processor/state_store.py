"""The processor's state topics: compacted Kafka topics, one record per key, read back in full
when a worker takes a partition over.

Faust's own table recovery stops at the end offset the broker reports when recovery starts;
against a broker that reports it late (Tansu keeping its log on S3 does) a worker would start
from part of its state. Reading on until the partition has stayed quiet past that offset does
not depend on it.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic_core import from_json, to_json

# How long a state partition must stay quiet, after its reported end, to count as read.
QUIET_S = 1.0


def encode(value: Any) -> bytes | None:
    return None if value is None else to_json(value)


async def read_partition(bootstrap_servers: str, topic: str, partition: int, *, timeout_s: float = 120.0
                         ) -> dict[str, Any]:
    """Latest value of every live key in one partition of a state topic (tombstones remove keys)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    state: dict[str, Any] = {}
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=200)
            records = batch.get(tp, [])
            for record in records:
                key = record.key.decode()
                if record.value is None:
                    state.pop(key, None)
                else:
                    state[key] = from_json(record.value)
            if records:
                quiet_since = time.monotonic()
            elif await consumer.position(tp) >= end and time.monotonic() - quiet_since >= QUIET_S:
                break
        else:
            raise TimeoutError(f"reading state {topic}[{partition}] took over {timeout_s:.0f} s")
    finally:
        await consumer.stop()
    return state
