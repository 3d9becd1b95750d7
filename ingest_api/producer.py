"""The Kafka adapter of the API: send one event and wait until the broker acknowledged it."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from clickstream.kafka import producer_config
from clickstream.settings import Settings
from ingest_api.errors import BrokerUnavailable

log = logging.getLogger(__name__)


class KafkaEventProducer:
    """Starts lazily and restarts after failures, so the API comes up (and says 503) without a broker."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**producer_config(self._settings))
                try:
                    await asyncio.wait_for(producer.start(), self._settings.produce_timeout_s)
                except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                    await _quiet_stop(producer)
                    raise BrokerUnavailable(f"cannot connect to Kafka: {exc!r}") from exc
                self._producer = producer
            return self._producer

    async def send_many(self, records: list[tuple[str, str, bytes]]) -> None:
        """Send ``(topic, key, value)`` records; return once the broker acknowledged every one.

        Raises :class:`BrokerUnavailable` if any is not acknowledged in time: the caller must
        then answer that nothing is durable (some records may still land: they carry event
        ids, and duplicates are removed downstream).
        """
        if not records:
            return
        producer = await self._ensure_started()

        try:
            # A timeout scope rather than wait_for(): no task per request on the single-event path.
            async with asyncio.timeout(self._settings.produce_timeout_s):
                # Enqueue everything first so the records travel in few produce requests.
                futures = [await producer.send(topic, value=value, key=key.encode()) for topic, key, value in records]
                if len(futures) == 1:
                    await futures[0]
                else:
                    await asyncio.gather(*futures)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            log.warning("produce of %d records failed: %r", len(records), exc)
            # Start afresh next time: a producer that lost its broker may hold stale metadata.
            await self._reset(producer)
            raise BrokerUnavailable(f"Kafka did not acknowledge the events: {exc!r}") from exc

    async def ready(self, topic: str) -> bool:
        """True when the broker answers with the topic's partitions."""
        try:
            producer = await self._ensure_started()
            partitions = await asyncio.wait_for(producer.partitions_for(topic), self._settings.produce_timeout_s)
            return bool(partitions)
        except (BrokerUnavailable, KafkaError, OSError, asyncio.TimeoutError):
            return False

    async def _reset(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        await _quiet_stop(producer)

    async def stop(self) -> None:
        if self._producer is not None:
            await _quiet_stop(self._producer)
            self._producer = None


async def _quiet_stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 5)
    except Exception as exc:  # stopping a broken producer may fail in many ways; nothing is lost here
        log.debug("producer stop: %r", exc)
