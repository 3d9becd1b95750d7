"""Entry point of ``clickstream api``: the collection API under uvicorn."""

from __future__ import annotations

import uvicorn

from clickstream.settings import Settings
from ingest_api.app import create_app
from ingest_api.producer import KafkaEventProducer


def run(settings: Settings) -> None:
    app = create_app(settings, KafkaEventProducer(settings))
    uvicorn.run(app, host=settings.host, port=settings.api_port, log_level=settings.log_level.lower())
