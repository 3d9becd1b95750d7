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

    async def send(self, topic: str, key: str, value: bytes) -> None:
        """Return once the broker acknowledged the record; raise :class:`BrokerUnavailable` otherwise."""
        producer = await self._ensure_started()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value=value, key=key.encode()),
                self._settings.produce_timeout_s,
            )
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            log.warning("produce to %s failed: %r", topic, exc)
            # Start afresh next time: a producer that lost its broker may hold stale metadata.
            await self._reset(producer)
            raise BrokerUnavailable(f"Kafka did not acknowledge the event: {exc!r}") from exc

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
