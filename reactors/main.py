"""Entry point of ``clickstream reactor``: route each reaction to its handlers, at most once per handler.

Start-up: read the routes (a broken routes file stops the reactor with its line and reason),
build the handlers, read the delivery ledger back from ``reactor-deliveries``. Then consume
``clickstream.reactions``, dispatch each reaction and commit offsets after the batch was handled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from clickstream.health import start_health_server
from clickstream.kafka import create_topics
from clickstream.reactions import Reaction
from clickstream.settings import Settings
from clickstream.topics import Topics
from reactors.dispatch import Dispatcher, ReactorStats
from reactors.errors import RoutesFileError
from reactors.handlers import build_handlers
from reactors.ledger import DeliveryLedger
from reactors.routes import Routes, default_routes, parse_routes
from reactors.store import KafkaRecorder, read_ledger_records

log = logging.getLogger("clickstream.reactor")


def load_routes(settings: Settings) -> Routes:
    """The routes file named by the settings, or the default routes without one."""
    if settings.reactor_routes_file is None:
        return default_routes(settings.webhook_url, settings.webhook_secret, settings.webhook_timeout_s)
    path = Path(settings.reactor_routes_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RoutesFileError(f"cannot read: {exc.strerror}", origin=str(path)) from None
    return parse_routes(text, str(path))


def _now() -> datetime:
    return datetime.now(timezone.utc)


@asynccontextmanager
async def open_dispatcher(settings: Settings, stats: ReactorStats):
    """Routes, handlers, ledger and recorder wired together; the reactor and the replay command share it."""
    routes = load_routes(settings)
    async with httpx.AsyncClient() as http, KafkaRecorder(settings) as recorder:
        handlers = build_handlers(routes, http=http, logger=log)
        ledger = DeliveryLedger(await read_ledger_records(settings))
        log.info("routes from %s: %s; %d deliveries in the ledger", routes.origin,
                 {rule: list(names) for rule, names in routes.routes.items()}, len(ledger))
        yield Dispatcher(routes, handlers, ledger, recorder, stats, now=_now, clock=time.monotonic,
                         random=random.random)


async def consume(settings: Settings, stop: asyncio.Event, *, stats: ReactorStats | None = None,
                  group: str | None = None) -> None:
    """Run until ``stop`` is set. ``group`` overrides the consumer group (a new one re-reads the topic)."""
    topics = Topics.from_settings(settings)
    stats = stats if stats is not None else ReactorStats()
    await create_topics(settings)  # the dead-letter and ledger topics of a stack created before them
    async with open_dispatcher(settings, stats) as dispatcher:
        consumer = AIOKafkaConsumer(
            topics.reactions,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group or topics.group("reactor"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        health = await start_health_server(settings.host, settings.reactor_port,
                                           lambda: {"status": "ok", **stats.as_dict()})
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        try:
                            reaction = Reaction.from_bytes(record.value)
                        except ValidationError as exc:
                            # Kept in the topic (and the lake); counted and logged, nothing to deliver.
                            stats.undecodable += 1
                            log.error("undecodable reaction at %s[%s]@%s: %s", record.topic, record.partition,
                                      record.offset, exc)
                            continue
                        await dispatcher.dispatch(reaction)
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
