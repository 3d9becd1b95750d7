"""docker-compose.yml: valid for Debian's docker-compose, runs the same `clickstream` entry points as
the local stack, scales the stream processor, and builds its image with the project's own install.

No Docker engine is needed: ``docker-compose config`` only reads and resolves the file.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from clickstream.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"ingest-api", "stream-processor", "reactors", "sink", "dashboard"}


def docker_compose(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: `apt-get install -y docker-compose` (.ci/run does it)")
    # Only the variables a user might set for interpolation are dropped, so the file's defaults are checked.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLICKSTREAM_", "API_PORT", "DASHBOARD_PORT", "MINIO_", "LOADGEN_"))}
    return subprocess.run([binary, "-f", str(COMPOSE), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as docker-compose resolves it: anchors merged, env file read, variables substituted."""
    result = docker_compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_docker_compose_config_accepts_the_file():
    result = docker_compose("config", "-q")
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_every_clickstream_service_runs_a_real_subcommand(resolved):
    ours = {name: s for name, s in resolved.items() if s.get("image") == "clickstream:latest"}
    assert set(ours) == SERVICES | {"topics", "loadgen"}
    for name, service in ours.items():
        command, *args = service["command"]
        assert command in cli.commands, f"{name}: {service['command']}"
        # Parses the arguments as the container would (unknown options, bad values fail here).
        cli.commands[command].make_context(command, list(args))
        env = service["environment"]
        assert env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        # Apache Kafka supports the idempotent producer; only the local Tansu broker lacks it.
        assert env["CLICKSTREAM_KAFKA_IDEMPOTENT_PRODUCER"] == "true", name
        assert env["CLICKSTREAM_S3_ENDPOINT"] == "http://minio:9000", name


def test_services_are_healthchecked_restarted_and_wait_for_healthy_dependencies(resolved):
    for name in SERVICES | {"kafka", "minio"}:
        service = resolved[name]
        assert service.get("healthcheck", {}).get("test"), name
        assert service["restart"] == "unless-stopped", name
    for name in SERVICES:
        conditions = {dep: spec["condition"] for dep, spec in resolved[name]["depends_on"].items()}
        assert conditions == {"kafka": "service_healthy", "minio": "service_healthy",
                              "topics": "service_completed_successfully",
                              "minio-init": "service_completed_successfully"}, name
    assert resolved["kafka"]["image"].startswith("apache/kafka:")
    assert resolved["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "mc mb" in resolved["minio-init"]["command"][0]


def test_the_stream_processor_scales(resolved):
    processor = resolved["stream-processor"]
    assert "container_name" not in processor and "ports" not in processor
    assert int(processor["environment"]["CLICKSTREAM_TOPIC_PARTITIONS"]) >= 3


def test_configuration_comes_from_the_documented_env_file(resolved):
    documented = {}
    for line in (ROOT / "compose.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            documented[name] = value
    for name in SERVICES:
        env = resolved[name]["environment"]
        assert {k: env.get(k) for k in documented} == documented, name


def test_the_loadgen_profile_sends_to_the_ingest_api(resolved):
    loadgen = resolved["loadgen"]
    assert loadgen["profiles"] == ["loadgen"]
    assert loadgen["depends_on"] == {"ingest-api": {"condition": "service_healthy"}}
    args = loadgen["command"]
    assert args[args.index("--api") + 1] == "http://ingest-api:8000"
    assert loadgen["restart"] == "no"  # a run ends; it is not restarted


def test_the_image_installs_the_project_as_the_local_stack_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [i.strip() for i in re.findall(r"pip install ([^&\\\n]*)", dockerfile)]
    assert installs == ["--no-cache-dir --upgrade pip", "--no-cache-dir ."], installs
    assert "COPY . ." in dockerfile  # every package pyproject.toml installs is in the build context
    ignored = (ROOT / ".dockerignore").read_text().split()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in (p.rstrip("*") for p in packages["include"]):
        assert (ROOT / package).is_dir() and package not in ignored, package
    # `make install` is the same pip install of the project (editable, with the test and benchmark extras).
    assert "pip install --quiet -e '.[test,bench]'" in (ROOT / "Makefile").read_text()
