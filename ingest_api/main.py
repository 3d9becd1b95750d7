"""Entry point of ``clickstream api``: the collection API under uvicorn, logging JSON lines."""

from __future__ import annotations

import gc

import uvicorn

from clickstream.logs import configure_logging
from clickstream.settings import Settings
from ingest_api.app import create_app
from ingest_api.producer import KafkaEventProducer

# Allocations between collections of the young generation (Python's default: 700). A request
# allocates a few hundred objects and frees nearly all of them once answered; with the default,
# the young generation was collected every 17 requests and the whole heap every 2,000: 35 us of
# the API's 300-odd us of CPU per request (BENCHMARKS.md, "Ingest API").
GC_THRESHOLDS = (20_000, 10, 10)


def run(settings: Settings) -> None:
    configure_logging(settings.log_level, json_lines=True)
    app = create_app(settings, KafkaEventProducer(settings))
    # What exists now (modules, routes, validators) lives as long as the process: frozen, it is
    # no longer walked by every collection of the oldest generation.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    # Each request is logged once by the app, with its request id; uvicorn's access log would repeat it.
    # proxy_headers off: uvicorn would otherwise take the client address from X-Forwarded-For of
    # any loopback peer, before the app's own rule (only CLICKSTREAM_TRUSTED_PROXIES are believed).
    uvicorn.run(app, host=settings.host, port=settings.api_port, log_level=settings.log_level.lower(),
                access_log=False, log_config=None, proxy_headers=False)
