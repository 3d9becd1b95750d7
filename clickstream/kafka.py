"""Kafka plumbing shared by every service: client settings and topic creation."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from clickstream.settings import Settings
from clickstream.topics import Topics

log = logging.getLogger(__name__)


def producer_config(settings: Settings) -> dict:
    """aiokafka producer options: every send waits for all in-sync replicas."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent_producer,
        "request_timeout_ms": int(settings.produce_timeout_s * 1000),
        "linger_ms": 5,
        # aiokafka's default, 16 KB, held a partition's batch to 14 of the API's 1.1 KB events: with one
        # request in flight per connection, that capped single-event requests at about 2,800/s on the
        # 2-core benchmark machine. 32 KB gave 3,477/s (64 KB more still, but a longer latency tail).
        "max_batch_size": 32 * 1024,
    }


def connection_for(partition: int, connections: list):
    """The producer (each its own connection) that a partition's records always go through.

    aiokafka keeps one produce request in flight per connection, and a broker that writes a
    request's partitions one after another (as Tansu with its log on S3 appears to) answers a
    request for many partitions only after the last. Over a connection per group of partitions
    they are written side by side, and a partition's records still travel in order through one.
    """
    return connections[partition % len(connections)]


async def create_topics(settings: Settings, *, attempts: int = 30) -> list[str]:
    """Create the stack's topics with the configured partitions; existing ones are kept."""
    names = Topics.from_settings(settings)
    topics = names.all()
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                new = [
                    NewTopic(t, settings.topic_partitions, settings.topic_replication_factor,
                             topic_configs=names.config(t))
                    for t in missing
                ]
                try:
                    await admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass  # created by another process in the meantime
                log.info("created topics %s", missing)
            return missing
        except KafkaError as exc:
            if attempt == attempts - 1:
                raise
            log.info("broker not ready for topic creation (%s), retrying", exc)
            await asyncio.sleep(1)
        finally:
            await admin.close()
    return []


async def committed_offsets(settings: Settings, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The offsets a consumer group has committed on these topics, by (topic, partition).

    Asked through a consumer of the group that joins nothing (the admin client's OffsetFetch
    is not understood by every Kafka-protocol broker: Tansu's answer fails to parse).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata
        offsets = {}
        for topic in topics:
            for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                committed = await consumer.committed(TopicPartition(topic, partition))
                if committed is not None:
                    offsets[(topic, partition)] = committed
        return offsets
    finally:
        await consumer.stop()
