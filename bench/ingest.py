"""Benchmark: the ingest API's throughput and latency against a raw aiokafka producer.

Measured in one run, on one machine, against one broker, with the same concurrency:

* ``api``      -- ``POST /v1/page`` on the real API (``python -m clickstream api`` under uvicorn,
                  in its own process) over ``--concurrency`` keep-alive connections. Each
                  answer is a 200 only after Kafka acknowledged the event (acks=all).
* ``producer`` -- the baseline: one ``AIOKafkaProducer`` with the API's own producer settings
                  (``clickstream.kafka.producer_config``: acks=all, no idempotence, linger 5 ms)
                  doing ``send_and_wait`` from ``--concurrency`` tasks. Its records are the
                  events the API would write for the same bodies (built with the API's
                  ``build_event`` before timing), so they have the same size and the same
                  key (the visitor id).
* ``no-kafka`` -- the API's own entry point (``ingest_api.main.run``: same app, logging and
                  uvicorn options) with a producer that returns at once: the cost of HTTP,
                  FastAPI, validation, enrichment and logging without the broker
                  (``--no-kafka-baseline`` leaves it out).

Each repetition runs the three in turn (the order rotates) over ``--events`` events; the
figures are medians over ``--repeat`` repetitions (events/s, p50 and p99 latency per
request; the ratio is the median of each repetition's api/producer events/s). At the end
the API's raw topic and the baseline's topic are read back from the beginning and their
record counts compared with the number of 200 answers and of acknowledged sends.

The load generator is aiohttp by default. ``--client httpx`` uses one ``httpx.AsyncClient``
instead: on the 2-core machine of BENCHMARKS.md it spent about 2.8 ms of CPU per request
with 32 connections (aiohttp: about 0.2 ms), so the client, not the API, set the pace.

By default it starts its own SeaweedFS and Tansu (log on S3, as ``clickstream up`` does) on
free loopback ports in a temporary directory and stops them at the end; ``--bootstrap``
uses a running broker instead (topics get a fresh prefix). Run it by hand from the
project root; it is not part of the test suite:

    .venv/bin/python bench/ingest.py
    .venv/bin/python bench/ingest.py --events 2000 --repeat 3 --concurrency 64
    .venv/bin/python bench/ingest.py --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from clickstream.kafka import create_topics, producer_config
from clickstream.settings import LOOPBACK, Settings, load_settings
from clickstream.stack.components import SERVICES_STAGE, Component, stack_components
from clickstream.stack.probes import free_port, free_port_pair, http_ok
from clickstream.stack.servers import GRPC_OFFSET
from clickstream.stack.supervisor import StackError, Supervisor, tail
from clickstream.topics import Topics
from ingest_api.enrich import Requester, build_event, parse_incoming

WRITE_KEY = "bench-write-key"
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36")
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
           "Content-Type": "application/json", "User-Agent": USER_AGENT}
Call = Callable[[int], Awaitable[bool]]  # sends event i; True when it was accepted
Post = Callable[[bytes], Awaitable[int]]  # posts one body; the HTTP status


@dataclass
class Run:
    ok: int
    failed: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]  # exceptions instead of an answer, by repr

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]


@dataclass
class Total:
    ok: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, run: Run) -> None:
        self.ok += run.ok
        self.failed += run.failed
        self.errors.update(run.errors)


async def drive(call: Call, n: int, concurrency: int) -> Run:
    """``call(i)`` for i in range(n) from ``concurrency`` tasks; each call's latency is kept."""
    todo, latencies, failed, errors = iter(range(n)), [], 0, Counter()

    async def worker() -> None:
        nonlocal failed
        for i in todo:
            start = time.perf_counter()
            try:
                ok = await call(i)
            except (OSError, asyncio.TimeoutError, aiohttp.ClientError, httpx.HTTPError, KafkaError) as exc:
                ok = False
                errors[repr(exc)] += 1
            latencies.append(time.perf_counter() - start)
            failed += not ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(n - failed, failed, time.perf_counter() - start, latencies, errors)


def page_bodies(n: int, visitors: int) -> list[bytes]:
    return [
        json.dumps({"anonymousId": f"visitor-{i % visitors:05d}", "name": "Home",
                    "properties": {"path": "/", "title": "Home"}}).encode()
        for i in range(n)
    ]


async def open_http(kind: str, url: str, concurrency: int, stack: AsyncExitStack) -> Post:
    """``post(body) -> status`` of ``POST /v1/page`` over ``concurrency`` keep-alive connections."""
    if kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=30))

        async def post(body: bytes) -> int:
            return (await client.post("/v1/page", content=body)).status_code

        return post
    session = await stack.enter_async_context(aiohttp.ClientSession(
        url, headers=HEADERS, connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=30)))

    async def post(body: bytes) -> int:
        async with session.post("/v1/page", data=body) as response:
            await response.read()
            return response.status

    return post


def http_call(post: Post, bodies: list[bytes]) -> Call:
    async def call(i: int) -> bool:
        return await post(bodies[i]) == 200

    return call


def producer_call(producer: AIOKafkaProducer, topic: str, settings: Settings,
                  bodies: list[bytes]) -> Call:
    # The records the API would write for these bodies (same client address and agent), built before timing.
    now = datetime.now(timezone.utc)
    requester = Requester(ip=LOOPBACK, user_agent=USER_AGENT, anonymize_ip=settings.anonymize_ip)
    events = [build_event(parse_incoming(json.loads(b), "page"), source=settings.demo_source, received_at=now,
                          requester=requester) for b in bodies]
    records = [(e.visitor_id.encode(), e.to_bytes()) for e in events]

    async def send(i: int) -> bool:
        key, value = records[i]
        await producer.send_and_wait(topic, value=value, key=key)
        return True

    return send


async def read_back(settings: Settings, topic: str, idle_s: int = 3) -> tuple[int, int, float]:
    """Every record on ``topic``: (count, distinct event ids, mean bytes).

    It reads until nothing came for ``idle_s`` seconds rather than up to the end offsets:
    Tansu's S3 engine was seen reporting end offsets below the last record it serves.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        idle = 0
        while idle < idle_s:
            batches = (await consumer.getmany(timeout_ms=1000)).values()
            idle = 0 if any(batches) else idle + 1
            for batch in batches:
                values.extend(r.value for r in batch)
    finally:
        await consumer.stop()
    ids = {json.loads(v)["event_id"] for v in values}
    return len(values), len(ids), statistics.fmean(map(len, values)) if values else 0.0


async def measure(args, settings: Settings, base: Settings, urls: dict[str, str]) -> None:
    bodies = page_bodies(max(args.events, args.warmup), args.visitors)
    async with AsyncExitStack() as stack:
        producer = AIOKafkaProducer(**producer_config(base))
        await producer.start()
        stack.push_async_callback(producer.stop)
        calls = {"producer": producer_call(producer, Topics.from_settings(base).raw, base, bodies)}
        for name, url in urls.items():
            calls[name] = http_call(await open_http(args.client, url, args.concurrency, stack), bodies)
        names = sorted(calls, key=["api", "producer", "no-kafka"].index)
        totals = {name: Total() for name in names}
        for name in names:  # warm-up: connections, the API's lazily started producer, metadata
            totals[name].add(await drive(calls[name], args.warmup, args.concurrency))
        runs: dict[str, list[Run]] = {name: [] for name in names}
        print(f"{'rep':>3}  {'target':<9} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
        for rep in range(args.repeat):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                run = await drive(calls[name], args.events, args.concurrency)
                runs[name].append(run)
                totals[name].add(run)
                print(f"{rep + 1:>3}  {name:<9} {run.rate:>9.0f} {run.percentile(50) * 1e3:>8.1f} "
                      f"{run.percentile(99) * 1e3:>8.1f} {run.failed:>6}", flush=True)

    print(f"\nmedians of {args.repeat} repetitions, {args.events} events each, concurrency {args.concurrency}:")
    print(f"{'target':<9} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'events/s vs producer':>21}")
    for name in names:
        ratio = statistics.median(a.rate / b.rate for a, b in zip(runs[name], runs["producer"]))
        print(f"{name:<9} {statistics.median(r.rate for r in runs[name]):>9.0f} "
              f"{statistics.median(r.percentile(50) for r in runs[name]) * 1e3:>8.1f} "
              f"{statistics.median(r.percentile(99) for r in runs[name]) * 1e3:>8.1f} {ratio:>21.2f}")

    print("\nreading the topics back:")
    for name, s in (("api", settings), ("producer", base)):
        topic = Topics.from_settings(s).raw
        count, distinct, size = await read_back(s, topic)
        # The baseline sends the same prepared records in every repetition; the API's event ids are unique.
        ok = count == totals[name].ok and (name != "api" or distinct == count)
        print(f"  {name:<9} {topic}: {count} records ({distinct} distinct event ids, mean {size:.0f} bytes); "
              f"{totals[name].ok} acknowledged, {totals[name].failed} failed -> {'OK' if ok else 'MISMATCH'}")
        for error, times in totals[name].errors.most_common(5):
            print(f"    {times} x {error}")


class NoKafka:
    """A producer that accepts everything at once: the API without the broker."""

    def __init__(self, _settings: Settings):
        pass

    async def send_many(self, records: list[tuple[str, str, bytes]]) -> None:
        return None

    async def ready(self, topic: str) -> bool:
        return True

    async def stop(self) -> None:
        return None


def serve_no_kafka() -> None:
    """``clickstream api`` as it is (logging, uvicorn options), with :class:`NoKafka` as its producer."""
    import ingest_api.main

    ingest_api.main.KafkaEventProducer = NoKafka
    ingest_api.main.run(load_settings())


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="events per target and repetition")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (medians are reported)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients / send tasks")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured events per target first")
    parser.add_argument("--visitors", type=int, default=1000, help="distinct visitor ids (the record keys)")
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp",
                        help="HTTP client of the load generator (see the docstring)")
    parser.add_argument("--bootstrap", help="host:port of a running broker; default: start SeaweedFS + Tansu")
    parser.add_argument("--no-kafka-baseline", action="store_true", help="skip the API-without-Kafka run")
    parser.add_argument("--serve-no-kafka", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_no_kafka:  # the child process of the ``no-kafka`` target
        return serve_no_kafka()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        settings = Settings(
            _env_file=None, kafka_bootstrap_servers=args.bootstrap, broker_port=free_port(),
            s3_port=free_port_pair(GRPC_OFFSET), api_port=free_port(), state_dir=Path(tmp),
            topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", demo_write_key=WRITE_KEY,
        )
        base = settings.model_copy(update={"topic_prefix": settings.topic_prefix + "baseline."})
        wanted = ["api"] if args.bootstrap else ["s3", "broker", "api"]
        components = [c for c in stack_components(settings) if c.name in wanted]
        urls = {"api": settings.url(settings.api_port)}
        if not args.no_kafka_baseline:
            bare = settings.model_copy(update={"api_port": free_port()})
            url = bare.url(bare.api_port)
            components.append(Component(
                name="no-kafka", command=[sys.executable, str(Path(__file__).resolve()), "--serve-no-kafka"],
                port=bare.api_port, url=url, ready=lambda: http_ok(url + "/healthz"), env=bare.as_env(),
            ))
            urls["no-kafka"] = url

        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
        print(f"broker: {'Tansu (S3 log on SeaweedFS), started here' if not args.bootstrap else args.bootstrap}; "
              f"bootstrap {settings.bootstrap_servers}; topics {settings.topic_prefix}*\n")

        def before_stage(stage: int) -> None:
            if stage == SERVICES_STAGE:
                for s in (settings, base):
                    asyncio.run(create_topics(s))

        supervisor = Supervisor(settings, components)
        try:
            supervisor.start(before_stage=before_stage)
            asyncio.run(measure(args, settings, base, urls))
        except StackError:
            for log in sorted(settings.logs_dir.glob("*.log")):  # the temporary directory goes away
                print(f"--- {log.name}\n{tail(log)}", file=sys.stderr)
            raise
        finally:
            supervisor.stop()


if __name__ == "__main__":
    main()
