"""Prometheus metrics of the API, in a registry of its own (one per app, so tests do not collide)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "clickstream_ingest_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
            registry=self.registry,
        )
        self.events = Counter(
            "clickstream_ingest_events", "Events by outcome (accepted, rejected) and reason", ["outcome", "reason"],
            registry=self.registry,
        )
        self.client_metrics = Counter(
            "clickstream_ingest_client_metric_series", "Telemetry series analytics.js reported about itself",
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "clickstream_ingest_produce_seconds", "Time until Kafka acknowledged a request's events",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
