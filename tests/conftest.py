"""Session fixtures: one real SeaweedFS S3 server and one real Tansu broker (its log on that
S3 server), both on free loopback ports; and factories for settings and events.

Integration tests isolate themselves from each other by topic prefix and bucket, not by
starting more servers.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from clickstream.events import Event
from clickstream.settings import Settings
from clickstream.storage import bucket_exists
from clickstream.stack.probes import free_port, free_port_pair, tcp_open
from clickstream.stack.servers import (
    GRPC_OFFSET,
    WEED_PORT_FLAGS,
    tansu_command,
    tansu_env,
    weed_command,
    weed_env,
)

ACCESS_KEY, SECRET_KEY, REGION = "test-access", "test-secret", "us-east-1"
BROKER_LOG_BUCKET = "broker-log"


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path
    other_ports: dict | None = None

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if it has not exited 10 s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def start_tansu(port: int, s3_endpoint: str, log: Path, storage: str | None = None) -> Server:
    """A Tansu broker; its log on the shared S3 server unless ``storage`` says otherwise (e.g. memory://)."""
    cmd = tansu_command(port, BROKER_LOG_BUCKET)
    if storage is not None:
        cmd[cmd.index("--storage-engine") + 1] = storage
    process = _start(cmd, tansu_env(s3_endpoint, ACCESS_KEY, SECRET_KEY, REGION), log)
    wait_until(lambda: tcp_open("127.0.0.1", port) or process.poll() is not None, 30, "the Tansu broker")
    assert process.poll() is None, log.read_text()
    return Server(process, port, log)


def start_weed(data: Path, buckets: list[str], port: int | None = None, other: dict | None = None) -> Server:
    """A SeaweedFS S3 server on free loopback ports (or the given ones, to restart it on its data)."""
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port_pair(GRPC_OFFSET)
    other = other or {flag: free_port_pair(GRPC_OFFSET) for flag in WEED_PORT_FLAGS}
    log = data / "weed.log"
    process = _start(weed_command(data / "data", port, buckets, other), weed_env(ACCESS_KEY, SECRET_KEY), log)
    server = Server(process, port, log)
    server.other_ports = other
    settings = Settings(_env_file=None, s3_endpoint=f"http://127.0.0.1:{port}", s3_bucket=buckets[0],
                        s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY)
    try:
        wait_until(lambda: process.poll() is not None or bucket_exists(settings), 60, "SeaweedFS")
        assert process.poll() is None, log.read_text()[-3000:]
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Server:
    server = start_weed(tmp_path_factory.mktemp("seaweedfs"), [BROKER_LOG_BUCKET])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_broker(s3_server, tmp_path_factory) -> Server:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    server = start_tansu(free_port(), f"http://127.0.0.1:{s3_server.port}", log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings_factory(s3_server, kafka_broker, tmp_path):
    """Settings for one test: its own topic prefix, bucket and state directory on the shared servers."""

    def make(**overrides) -> Settings:
        unique = uuid.uuid4().hex[:8]
        values = dict(
            kafka_bootstrap_servers=f"127.0.0.1:{kafka_broker.port}",
            s3_endpoint=f"http://127.0.0.1:{s3_server.port}",
            s3_access_key=ACCESS_KEY,
            s3_secret_key=SECRET_KEY,
            s3_region=REGION,
            s3_bucket=f"lake-{unique}",
            topic_prefix=f"t{unique}.",
            state_dir=tmp_path / f"state-{unique}",
            demo_write_key=f"key-{unique}",
        )
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def event_factory():
    """Builds valid :class:`Event` objects; ``n`` gives unique ids."""
    counter = iter(range(1_000_000))

    def make(**fields) -> Event:
        now = datetime.now(timezone.utc)
        n = next(counter)
        values = dict(
            event_id=f"evt-{n}-{uuid.uuid4().hex[:6]}",
            type="page",
            event="Home",
            anonymous_id=f"anon-{n % 7}",
            timestamp=now,
            received_at=now,
            source="demo",
            path="/",
        )
        values.update(fields)
        return Event(**values)

    return make


@pytest.fixture
def read_topic():
    """Reads a topic from the beginning until ``expected`` records arrived (then a short grace for extras)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    def read(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
        async def run():
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                        enable_auto_commit=False, group_id=None)
            await consumer.start()
            records, deadline = [], time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=500)
                    for part in batch.values():
                        records.extend(part)
                    if len(records) >= expected:
                        # Anything beyond the expected count would be a defect: give it a moment to show.
                        extra = await consumer.getmany(timeout_ms=1000)
                        for part in extra.values():
                            records.extend(part)
                        break
            finally:
                await consumer.stop()
            return records

        return asyncio.run(run())

    return read


@pytest.fixture
def free_ports():
    """Gives a new free loopback port at each call."""
    return free_port


def api_log(tmp_path: Path, settings: Settings) -> Path:
    """Where ``running_api`` writes the log of the API it started for these settings."""
    return tmp_path / f"api-{settings.api_port}.log"


@pytest.fixture
def running_api(tmp_path):
    """Starts the API as users run it (`python -m clickstream api`, a real uvicorn server) for given settings.

    Returns a function ``start(settings) -> base_url``; servers stop when the test ends.
    """
    import sys

    from clickstream.stack.probes import http_ok

    processes = []

    def start(settings: Settings) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
        env.update(settings.as_env())
        log = api_log(tmp_path, settings)
        process = _start([sys.executable, "-m", "clickstream", "api"], env, log)
        processes.append(process)
        url = settings.url(settings.api_port)
        wait_until(lambda: process.poll() is not None or http_ok(url + "/healthz"), 30, "the API")
        assert process.poll() is None, log.read_text()[-3000:]
        return url

    yield start
    for process in processes:
        stop_process(process)


@pytest.fixture
def write_lake():
    """Writes records to a lake table the way the sink does: ``write(settings, records, table="events")``."""
    from sink.destination import LakeDestination
    from sink.parquet import encode, plan_objects
    from sink.tables import TABLES

    def write(settings: Settings, records: list, table: str = "events", partition: int = 0) -> None:
        spec = next(s for s in TABLES if s.table == table)
        destination = LakeDestination.from_settings(settings)
        destination.ensure_ready()
        for obj in plan_objects(spec, partition, list(enumerate(records))):
            destination.put(obj.key, encode(obj))

    return write
