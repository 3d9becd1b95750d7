"""Entry point of ``clickstream api``: the collection API under uvicorn, logging JSON lines."""

from __future__ import annotations

import uvicorn

from clickstream.garbage import collect_less
from clickstream.logs import configure_logging
from clickstream.settings import Settings
from ingest_api.app import create_app
from ingest_api.producer import KafkaEventProducer


def run(settings: Settings) -> None:
    configure_logging(settings.log_level, json_lines=True)
    app = create_app(settings, KafkaEventProducer(settings))
    collect_less()  # with Python's defaults, 35 us of a request's CPU went to garbage collection
    # Each request is logged once by the app, with its request id; uvicorn's access log would repeat it.
    # proxy_headers off: uvicorn would otherwise take the client address from X-Forwarded-For of
    # any loopback peer, before the app's own rule (only CLICKSTREAM_TRUSTED_PROXIES are believed).
    uvicorn.run(app, host=settings.host, port=settings.api_port, log_level=settings.log_level.lower(),
                access_log=False, log_config=None, proxy_headers=False)
