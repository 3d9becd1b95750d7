"""Entry point of ``clickstream reactor``: log each reaction and deliver it to the webhook.

Offsets are committed only after a reaction was handled, so a crash re-delivers
(at least once) and receivers dedupe by ``reaction_id``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter

import httpx
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from clickstream.health import start_health_server
from clickstream.reactions import Reaction
from clickstream.settings import Settings
from clickstream.topics import Topics
from reactors.webhook import deliver_until_accepted

log = logging.getLogger("clickstream.reactor")


async def consume(settings: Settings, stop: asyncio.Event) -> None:
    topics = Topics.from_settings(settings)
    stats: Counter[str] = Counter()
    consumer = AIOKafkaConsumer(
        topics.reactions,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=topics.group("reactor"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    health = await start_health_server(
        settings.host, settings.reactor_port, lambda: {"status": "ok", **stats}
    )
    await consumer.start()
    try:
        async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as client:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        try:
                            reaction = Reaction.from_bytes(record.value)
                        except ValidationError as exc:
                            stats["undecodable"] += 1
                            log.error("undecodable reaction at offset %s: %s", record.offset, exc)
                            continue
                        stats["received"] += 1
                        log.info("reaction %s [%s] %s", reaction.reaction_id, reaction.rule, reaction.message)
                        if settings.webhook_url:
                            stats["delivery_retries"] += await deliver_until_accepted(
                                client, settings.webhook_url, reaction
                            )
                            stats["delivered"] += 1
                if batch:
                    await consumer.commit()
    finally:
        await consumer.stop()
        await health.cleanup()


def run(settings: Settings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await consume(settings, stop)

    asyncio.run(main())
