"""Kafka plumbing shared by every service: client settings and topic creation."""

from __future__ import annotations

import asyncio
import logging

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
    }


async def create_topics(settings: Settings, *, attempts: int = 30) -> list[str]:
    """Create the stack's topics with the configured partitions; existing ones are kept."""
    topics = Topics.from_settings(settings).all()
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                new = [
                    NewTopic(t, settings.topic_partitions, settings.topic_replication_factor)
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


async def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The offsets a consumer group has committed, by (topic, partition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                request_timeout_ms=int(settings.produce_timeout_s * 1000))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
