"""The Kafka adapter of the API: send events and wait until the broker acknowledged them.

The API writes through ``api_producers`` aiokafka producers, each its own connection, and sends
every record of a partition through the same one (:func:`clickstream.kafka.connection_for` says
why). Records keep Kafka's default partitioner (murmur2 of the key), so a visitor's events go to
the same partition as with one producer and, through one producer, in the order they were sent.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from clickstream.kafka import connection_for, producer_config
from clickstream.settings import Settings
from ingest_api.errors import BrokerUnavailable

log = logging.getLogger(__name__)


@lru_cache(maxsize=65536)
def key_hash(key: bytes) -> int:
    """The hash by which Kafka's default partitioner places a key: positive murmur2.

    aiokafka's murmur2 is pure Python, 5 us for a 36-byte anonymous id; a visitor sends many
    events, so each key is hashed once while it is among the 65,536 most recent.
    """
    return murmur2(key) & 0x7FFFFFFF


class KafkaEventProducer:
    """Starts lazily and restarts after failures, so the API comes up (and says 503) without a broker."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._producers: list[AIOKafkaProducer] | None = None
        self._lock = asyncio.Lock()

    async def _ensure_started(self) -> list[AIOKafkaProducer]:
        async with self._lock:
            if self._producers is None:
                producers = [AIOKafkaProducer(**producer_config(self._settings))
                             for _ in range(self._settings.api_producers)]
                try:
                    await asyncio.wait_for(asyncio.gather(*(p.start() for p in producers)),
                                           self._settings.produce_timeout_s)
                except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                    await asyncio.gather(*(_quiet_stop(p) for p in producers))
                    raise BrokerUnavailable(f"cannot connect to Kafka: {exc!r}") from exc
                self._producers = producers
            return self._producers

    async def _partitions(self, producers: list[AIOKafkaProducer], topic: str) -> list[int]:
        known = producers[0].client.cluster.partitions_for_topic(topic)
        if not known:
            known = await producers[0].partitions_for(topic)  # fetches the topic's metadata
        return sorted(known)

    async def send_many(self, records: list[tuple[str, str, bytes]]) -> None:
        """Send ``(topic, key, value)`` records; return once the broker acknowledged every one.

        Raises :class:`BrokerUnavailable` if any is not acknowledged in time: the caller must
        then answer that nothing is durable (some records may still land: they carry event
        ids, and duplicates are removed downstream).
        """
        if not records:
            return
        producers = await self._ensure_started()

        try:
            # A timeout scope rather than wait_for(): no task per request on the single-event path.
            async with asyncio.timeout(self._settings.produce_timeout_s):
                # Enqueue everything first so the records travel in few produce requests.
                futures = []
                partitions: dict[str, list[int]] = {}
                for topic, key, value in records:
                    known = partitions.get(topic)
                    if known is None:
                        known = partitions[topic] = await self._partitions(producers, topic)
                    raw_key = key.encode()
                    partition = known[key_hash(raw_key) % len(known)]  # = DefaultPartitioner's choice
                    futures.append(await connection_for(partition, producers).send(
                        topic, value=value, key=raw_key, partition=partition))
                if len(futures) == 1:
                    await futures[0]
                else:
                    await asyncio.gather(*futures)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            log.warning("produce of %d records failed: %r", len(records), exc)
            # Start afresh next time: a producer that lost its broker may hold stale metadata.
            await self._reset(producers)
            raise BrokerUnavailable(f"Kafka did not acknowledge the events: {exc!r}") from exc

    async def ready(self, topic: str) -> bool:
        """True when the broker answers with the topic's partitions."""
        try:
            producers = await self._ensure_started()
            partitions = await asyncio.wait_for(producers[0].partitions_for(topic), self._settings.produce_timeout_s)
            return bool(partitions)
        except (BrokerUnavailable, KafkaError, OSError, asyncio.TimeoutError):
            return False

    async def _reset(self, producers: list[AIOKafkaProducer]) -> None:
        async with self._lock:
            if self._producers is producers:
                self._producers = None
        await asyncio.gather(*(_quiet_stop(p) for p in producers))

    async def stop(self) -> None:
        if self._producers is not None:
            producers, self._producers = self._producers, None
            await asyncio.gather(*(_quiet_stop(p) for p in producers))


async def _quiet_stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 5)
    except Exception as exc:  # stopping a broken producer may fail in many ways; nothing is lost here
        log.debug("producer stop: %r", exc)
