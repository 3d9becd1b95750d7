"""docker-compose.yml runs the same `clickstream` entry points as the local stack."""

from pathlib import Path

import yaml

from clickstream.cli import cli

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_every_clickstream_service_runs_a_real_subcommand():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "clickstream:latest"}
    assert set(ours) == {"topics", "ingest-api", "stream-processor", "reactors", "sink", "dashboard"}
    for name, service in ours.items():
        assert service["command"][0] in cli.commands, f"{name}: {service['command']}"
        env = service["environment"]
        assert env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        # Apache Kafka supports the idempotent producer; only the local Tansu broker lacks it.
        assert env["CLICKSTREAM_KAFKA_IDEMPOTENT_PRODUCER"] == "true", name
