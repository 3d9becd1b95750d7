"""Kafka adapters of the reactor: read a topic back to its end, publish ledger records and dead letters."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from clickstream.kafka import producer_config
from clickstream.reactions import DeadLetter, DeliveryRecord
from clickstream.settings import Settings
from clickstream.topics import Topics


# How long a topic must stay quiet, past its reported end, to count as read.
QUIET_S = 1.0
QUIET_POLLS = 5  # empty fetches within the quiet time: a blocked event loop's second does not count


async def read_to_end(settings: Settings, topic: str, *, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its end as of now, from all partitions (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        quiet_since, empty_polls = time.monotonic(), 0
        while True:
            # A broker may report end offsets behind its log (Tansu with its log on S3 does): past
            # the reported ends, reading goes on until the topic has stayed quiet for a moment.
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not behind and time.monotonic() - quiet_since >= QUIET_S and empty_polls >= QUIET_POLLS:
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: still behind its end on {behind} after {timeout_s:g} s")
            batch = await consumer.getmany(*partitions, timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            if any(batch.values()):
                quiet_since, empty_polls = time.monotonic(), 0
            else:
                empty_polls += 1
    finally:
        await consumer.stop()


async def read_ledger_records(settings: Settings) -> list[DeliveryRecord]:
    records = await read_to_end(settings, Topics.from_settings(settings).reactor_deliveries)
    return [DeliveryRecord.from_bytes(r.value) for r in records if r.value is not None]


async def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    records = await read_to_end(settings, Topics.from_settings(settings).dead_letters)
    return [DeadLetter.from_bytes(r.value) for r in records]


class KafkaRecorder:
    """Publishes the outcome of each delivery; every send waits for the broker's acknowledgement."""

    def __init__(self, settings: Settings):
        self.topics = Topics.from_settings(settings)
        self.producer = AIOKafkaProducer(**producer_config(settings))

    async def __aenter__(self) -> KafkaRecorder:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.producer.stop()

    async def record(self, record: DeliveryRecord) -> None:
        await self.producer.send_and_wait(self.topics.reactor_deliveries, record.to_bytes(), key=record.key())

    async def dead_letter(self, letter: DeadLetter) -> None:
        # Keyed by reaction, so one reaction's dead letters stay in order in one partition.
        await self.producer.send_and_wait(self.topics.dead_letters, letter.to_bytes(),
                                          key=letter.reaction.reaction_id.encode())


