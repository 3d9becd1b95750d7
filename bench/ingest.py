"""Benchmark: the ingest API's throughput and latency against a raw aiokafka producer.

Measured in one run, on one machine, against one broker, with the same concurrency, for
three workloads (``--workloads``):

* ``page``  -- ``POST /v1/page``, one small page call per request (the original workload).
* ``track`` -- ``POST /v1/track``, one track call per request, shaped like analytics.js's
               (``context.page`` with a URL carrying UTM parameters, ``context.library``,
               ``timestamp`` and ``sentAt``).
* ``batch`` -- ``POST /v1/batch``, Segment's ``{"batch": [...], "sentAt": ...}`` with
               ``--batch-size`` (100) of those track calls per request.

Each workload is sent to three targets:

* ``api``      -- the real API (``python -m clickstream api`` under uvicorn, one worker, in its
                  own process) over keep-alive connections. Each answer is a 200 only after
                  Kafka acknowledged every event of the request (acks=all).
* ``producer`` -- the baseline: ``AIOKafkaProducer``s with the API's own producer settings
                  (``clickstream.kafka.producer_config``: acks=all, no idempotence, linger 5 ms)
                  and its connection layout: ``api_producers`` of them (4), each record sent
                  through the one for its partition, as ``ingest_api.producer`` does.
                  A "request" sends the records the API would write for that request's body
                  (built with the API's ``parse_incoming`` and ``build_event`` before timing, so
                  they have the same size and key): ``send_and_wait`` for one record; for a batch,
                  every record is enqueued and then all acknowledgements are awaited, as the API's
                  ``KafkaEventProducer.send_many`` does.
* ``no-kafka`` -- the API's own entry point (``ingest_api.main.run``: same app, logging and
                  uvicorn options) with a producer that returns at once: the cost of HTTP,
                  FastAPI, validation, enrichment and logging without the broker
                  (``--no-kafka-baseline`` leaves it out).

Each repetition runs the targets in turn (the order rotates) with ``--concurrency`` closed-loop
clients (``--batch-concurrency`` for batches); the figures are medians over ``--repeat``
repetitions of events/s, requests/s and p50/p99 latency per request. The ratio is the median of
each repetition's events/s divided by the producer's events/s in that repetition.

Then, for ``/v1/track``:

* a concurrency sweep (``--sweep``, e.g. 8,32,64,128 closed-loop clients; ``--sweep-repeat``
  repetitions of ``--sweep-events`` requests) gives the API's peak requests/s;
* paced runs (``--paced-repeat`` x ``--paced-seconds``) send at a fixed arrival rate of
  ``--paced-fraction`` (0.5) of that peak, open loop: request i leaves at ``start + i / rate``
  whether or not earlier ones were answered (over up to ``--connections`` connections), and
  its latency is counted from that due time, so a stalled server or a late generator shows in
  the percentiles instead of lowering the rate (no coordinated omission). ``--paced-rate`` sets
  the rate directly. The same arrival rate is also sent to the producer baseline
  (``--paced-targets``), and for the API the run's share of its own ``clickstream_ingest_produce_seconds``
  histogram (read from ``/metrics`` before and after) shows how long Kafka took to acknowledge.

At the end the verdict on the project's goals is printed (batch at least 50% of the producer's
events/s; /v1/track at least 3,000 requests/s; p99 under 50 ms at half of the peak rate), and the
API's raw topic and the baseline's topic are read back from the beginning and their record counts
compared with the number of events acknowledged.

The machine may be shared: every run line has an ``other %`` column, the CPU that processes other
than this benchmark and the stack it started used meanwhile (read from ``/proc``; in % of one
core, the machine having ``os.cpu_count()`` x 100 %), and the section headers give the load average.

``--producer-option KEY=VALUE`` adds an aiokafka producer setting (e.g. ``max_batch_size=262144``)
to ``producer_config`` for the API and the baseline alike; the API then runs through this script
(``ingest_api.main.run`` with the patched settings) instead of ``python -m clickstream api``.

The load generator is aiohttp by default. ``--client httpx`` uses one ``httpx.AsyncClient``
instead: on the 2-core machine of BENCHMARKS.md it spent about 2.8 ms of CPU per request
with 32 connections (aiohttp: about 0.2 ms), so the client, not the API, set the pace.
``--client raw`` writes prepared request bytes on asyncio streams and reads just the status
line, headers and ``Content-Length`` body: it leaves the most of the machine to the API and
the servers it shares it with.

By default it starts its own SeaweedFS and Tansu (log on S3, as ``clickstream up`` does) on
free loopback ports in a temporary directory and stops them at the end; ``--bootstrap``
uses a running broker instead (topics get a fresh prefix). Run it by hand from the
project root; it is not part of the test suite:

    .venv/bin/python bench/ingest.py
    .venv/bin/python bench/ingest.py --workloads page --sweep ''      # the original measurement only
    .venv/bin/python bench/ingest.py --workloads track,batch --sweep 8,32,64,128 --paced-fraction 0.25,0.5
    .venv/bin/python bench/ingest.py --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.errors import KafkaError

from clickstream.kafka import connection_for, create_topics, producer_config
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
TARGETS = ["api", "producer", "no-kafka"]
Call = Callable[[int], Awaitable[bool]]  # sends request i; True when it was accepted
Post = Callable[[str, bytes], Awaitable[int]]  # posts one body to a path; the HTTP status
FAILURES = (OSError, asyncio.TimeoutError, aiohttp.ClientError, httpx.HTTPError, KafkaError)


@dataclass
class Run:
    ok: int  # requests
    failed: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]  # exceptions instead of an answer, by repr
    per_request: int = 1  # events per request
    other: float = float("nan")  # CPU of other processes meanwhile, % of one core (see OtherLoad)

    @property
    def rate(self) -> float:
        """Accepted requests per second."""
        return self.ok / self.seconds

    @property
    def event_rate(self) -> float:
        return self.rate * self.per_request

    def percentile(self, p: int) -> float:
        return percentile(self.latencies, p)


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@dataclass
class Total:
    ok: int = 0  # requests
    failed: int = 0
    events: int = 0  # events of the accepted requests
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, run: Run) -> None:
        self.ok += run.ok
        self.failed += run.failed
        self.events += run.ok * run.per_request
        self.errors.update(run.errors)


class OtherLoad:
    """CPU time used by processes that are neither this benchmark nor its children (the stack it started).

    A thread reads ``/proc`` every second; :meth:`since` gives the other processes' mean CPU
    use since a :meth:`mark`, in % of one core (the machine has ``os.cpu_count()`` x 100 %).
    Processes that start and end within one second are missed.
    """

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.seconds = 0.0  # other processes' CPU seconds since start()
        self._seen: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _processes() -> dict[int, tuple[int, int, float]]:
        """pid -> (parent pid, start time, CPU seconds)."""
        out = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                out[int(name)] = (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
        return out

    def _sample(self, count: bool) -> None:
        processes = self._processes()
        ours, grew = {os.getpid()}, True
        while grew:
            grew = False
            for pid, (parent, _, _) in processes.items():
                if parent in ours and pid not in ours:
                    ours.add(pid)
                    grew = True
        with self._lock:
            seen, used = {}, 0.0
            for pid, (_, started, cpu) in processes.items():
                if pid not in ours:
                    seen[(pid, started)] = cpu
                    used += cpu - self._seen.get((pid, started), 0.0)  # a new process: all of its CPU time
            self._seen = seen
            if count:
                self.seconds += used

    def start(self) -> None:
        if not Path("/proc/self/stat").exists():
            return  # not Linux: the column stays empty
        self._sample(count=False)
        self._thread = threading.Thread(target=self._run, daemon=True, name="other-load")
        self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self._sample(count=True)

    def mark(self) -> tuple[float, float]:
        with self._lock:
            return time.monotonic(), self.seconds

    def since(self, mark: tuple[float, float]) -> float:
        if self._thread is None:
            return float("nan")
        self._sample(count=True)
        now, seconds = self.mark()
        return (seconds - mark[1]) / max(now - mark[0], 1e-9) * 100


OTHER = OtherLoad()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


async def drive(call: Call, n: int, concurrency: int, per_request: int = 1) -> Run:
    """``call(i)`` for i in range(n) from ``concurrency`` tasks; each call's latency is kept."""
    todo, latencies, failed, errors = iter(range(n)), [], 0, Counter()

    async def worker() -> None:
        nonlocal failed
        for i in todo:
            start = time.perf_counter()
            try:
                ok = await call(i)
            except FAILURES as exc:
                ok = False
                errors[repr(exc)] += 1
            latencies.append(time.perf_counter() - start)
            failed += not ok

    start, mark = time.perf_counter(), OTHER.mark()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return Run(n - failed, failed, seconds, latencies, errors, per_request, OTHER.since(mark))


@dataclass
class Paced:
    rate: float  # arrivals per second asked for
    sent: int
    failed: int
    seconds: float  # from the first due time to the last answer
    latencies: list[float]  # from each request's due time to its answer
    lateness: list[float]  # how late each request left the generator
    errors: Counter[str]
    other: float = float("nan")  # CPU of other processes meanwhile, % of one core
    produce: dict[float, float] | None = None  # the API's produce-time histogram buckets over the run

    @property
    def ok(self) -> int:
        return self.sent - self.failed

    @property
    def answered_rate(self) -> float:
        return self.ok / self.seconds


async def paced(call: Call, rate: float, seconds: float) -> Paced:
    """Open loop: request i is due at ``start + i / rate``, however many are still unanswered."""
    n = max(1, round(rate * seconds))
    latencies, lateness, errors, tasks = [], [], Counter(), []
    failed = 0

    async def one(i: int, due: float) -> None:
        nonlocal failed
        lateness.append(time.perf_counter() - due)
        try:
            ok = await call(i)
        except FAILURES as exc:
            ok = False
            errors[repr(exc)] += 1
        latencies.append(time.perf_counter() - due)
        failed += not ok

    start, mark = time.perf_counter() + 0.01, OTHER.mark()
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return Paced(rate, n, failed, time.perf_counter() - start, latencies, lateness, errors, OTHER.since(mark))


# --- workloads ------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    path: str
    call_type: str | None  # the type the endpoint implies; None for a batch
    bodies: list[bytes]
    per_request: int  # events per request
    requests: int  # per target and repetition
    concurrency: int


def page_bodies(n: int, visitors: int) -> list[bytes]:
    return [
        json.dumps({"anonymousId": f"visitor-{i % visitors:05d}", "name": "Home",
                    "properties": {"path": "/", "title": "Home"}}).encode()
        for i in range(n)
    ]


def track_call(i: int, visitors: int, at: str) -> dict:
    """A track call as analytics.js sends it (about 600 bytes of JSON)."""
    sku = f"sku-{i % 500:04d}"
    return {
        "anonymousId": f"visitor-{i % visitors:05d}", "event": "Product Viewed",
        "properties": {"product_id": sku, "category": "shoes", "price": 59.9, "currency": "EUR"},
        "context": {
            "page": {"url": f"https://shop.example/products/{sku}?utm_source=newsletter&utm_medium=email",
                     "path": f"/products/{sku}", "referrer": "https://www.google.com/", "title": "Product"},
            "library": {"name": "analytics.js", "version": "npm:next-1.70.0"}, "locale": "en-US",
        },
        "timestamp": at,
    }


def track_bodies(n: int, visitors: int) -> list[bytes]:
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return [json.dumps({**track_call(i, visitors, at), "sentAt": at}).encode() for i in range(n)]


def batch_bodies(n: int, size: int, visitors: int) -> list[bytes]:
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return [json.dumps({"batch": [{"type": "track", **track_call(r * size + j, visitors, at)} for j in range(size)],
                        "sentAt": at}).encode()
            for r in range(n)]


def workloads(args) -> dict[str, Workload]:
    singles = max(args.events, args.warmup, args.sweep_events if args.sweep else 0)
    batches = max(1, args.batch_events // args.batch_size)
    return {
        "page": Workload("page", "/v1/page", "page", page_bodies(singles, args.visitors), 1, args.events,
                         args.concurrency),
        "track": Workload("track", "/v1/track", "track", track_bodies(singles, args.visitors), 1, args.events,
                          args.concurrency),
        "batch": Workload("batch", "/v1/batch", None, batch_bodies(batches, args.batch_size, args.visitors),
                          args.batch_size, batches, args.batch_concurrency),
    }


# --- targets ---------------------------------------------------------------------------
async def open_http(kind: str, url: str, connections: int, stack: AsyncExitStack) -> Post:
    """``post(path, body) -> status`` over up to ``connections`` keep-alive connections."""
    if kind == "raw":
        return await open_raw_http(url, connections, stack)
    if kind == "httpx":
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=30))

        async def post(path: str, body: bytes) -> int:
            return (await client.post(path, content=body)).status_code

        return post
    session = await stack.enter_async_context(aiohttp.ClientSession(
        url, headers=HEADERS, connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30)))

    async def post(path: str, body: bytes) -> int:
        async with session.post(path, data=body) as response:
            await response.read()
            return response.status

    return post


async def open_raw_http(url: str, connections: int, stack: AsyncExitStack) -> Post:
    """HTTP/1.1 over asyncio streams, request bytes built once per path and body: the client that
    costs the load generator least CPU, which it shares with the API, the broker and SeaweedFS.
    Enough HTTP for the API's answers: a status line, headers, a body of ``Content-Length``."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    head = "".join(f"{k}: {v}\r\n" for k, v in {**HEADERS, "Host": f"{host}:{port}"}.items())
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []
    requests: dict[tuple[str, int], bytes] = {}

    async def close_all() -> None:
        for writer in opened:
            writer.close()

    stack.push_async_callback(close_all)

    async def post(path: str, body: bytes) -> int:
        request = requests.get((path, id(body)))
        if request is None:
            request = requests[(path, id(body))] = (
                f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        while idle:
            reader, writer = idle.pop()
            try:
                return await exchange(reader, writer, request)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                # The server closed this idle keep-alive connection (uvicorn does after 5 s):
                # nothing came back, so the request goes again on another one.
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise OSError(f"connection closed mid-answer: {exc!r}") from exc
        if len(opened) >= connections:
            raise OSError("more concurrent requests than connections")
        reader, writer = await asyncio.open_connection(host, port)
        opened.append(writer)
        try:
            return await exchange(reader, writer, request)
        except asyncio.IncompleteReadError as exc:
            raise OSError(f"connection closed: {exc!r}") from exc

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
        try:
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            lines = header.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            fields = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            await reader.readexactly(int(fields[b"content-length"]))
        except BaseException:
            writer.close()
            opened.remove(writer)
            raise
        if fields.get(b"connection", b"").lower() == b"close":
            writer.close()
            opened.remove(writer)
        else:
            idle.append((reader, writer))
        return status

    return post


def http_call(post: Post, workload: Workload) -> Call:
    path, bodies = workload.path, workload.bodies

    async def call(i: int) -> bool:
        return await post(path, bodies[i % len(bodies)]) == 200

    return call


def api_records(workload: Workload, settings: Settings) -> list[list[tuple[bytes, bytes]]]:
    """Per request, the ``(key, value)`` records the API writes for its body (same client address and agent).

    The steps of the API's ``process_calls``: a batch's ``sentAt`` goes to each call, then
    ``parse_incoming`` and ``build_event``.
    """
    now = datetime.now(timezone.utc)
    requester = Requester(ip=LOOPBACK, user_agent=USER_AGENT, anonymize_ip=settings.anonymize_ip)
    out = []
    for body in workload.bodies:
        decoded = json.loads(body)
        calls = [decoded] if workload.call_type else [
            c if "sentAt" in c else {**c, "sentAt": decoded.get("sentAt")} for c in decoded["batch"]]
        events = [build_event(parse_incoming(c, workload.call_type), source=settings.demo_source, received_at=now,
                              requester=requester) for c in calls]
        out.append([(e.visitor_id.encode(), e.to_bytes()) for e in events])
    return out


def producer_call(producers: list[AIOKafkaProducer], partitions: list[int], topic: str, settings: Settings,
                  workload: Workload) -> Call:
    # The API's connection layout (ingest_api.producer): each partition's records go through one
    # of the producers, chosen by partition, to the partition Kafka's default partitioner picks.
    partition_of = DefaultPartitioner()

    def routed(key: bytes, value: bytes) -> tuple[AIOKafkaProducer, int, bytes, bytes]:
        partition = partition_of(key, partitions, partitions)
        return connection_for(partition, producers), partition, key, value

    # Built before timing.
    requests = [[routed(key, value) for key, value in records] for records in api_records(workload, settings)]

    async def send(i: int) -> bool:
        records = requests[i % len(requests)]
        if len(records) == 1:
            producer, partition, key, value = records[0]
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)
            return True
        # Enqueue everything, then wait for every acknowledgement (as KafkaEventProducer.send_many does).
        futures = [await producer.send(topic, value=value, key=key, partition=partition)
                   for producer, partition, key, value in records]
        await asyncio.gather(*futures)
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
    count, ids, size = 0, set(), 0
    try:
        idle = 0
        while idle < idle_s:
            batches = (await consumer.getmany(timeout_ms=1000)).values()
            idle = 0 if any(batches) else idle + 1
            for batch in batches:
                for r in batch:
                    count += 1
                    size += len(r.value)
                    ids.add(json.loads(r.value)["event_id"])
    finally:
        await consumer.stop()
    return count, len(ids), size / count if count else 0.0


# --- measurements ----------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def load() -> str:
    """The machine's load average (1 min), to show when other work shared it."""
    return f"load average {os.getloadavg()[0]:.2f}"


async def compare(workload: Workload, calls: dict[str, Call], totals: dict[str, Total],
                  args) -> dict[str, list[Run]]:
    """The targets in turn, ``args.repeat`` times, on one workload."""
    names = list(calls)
    warmup = max(1, args.warmup // workload.per_request)
    for name in names:  # warm-up: connections, the API's lazily started producer, metadata
        totals[name].add(await drive(calls[name], warmup, workload.concurrency, workload.per_request))
    runs: dict[str, list[Run]] = {name: [] for name in names}
    print(f"\n== {workload.name}: POST {workload.path}, {workload.per_request} event(s) per request, "
          f"{workload.requests} requests per run, concurrency {workload.concurrency}; {load()}")
    print(f"{'rep':>3}  {'target':<9} {'events/s':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} "
          f"{'other %':>7}")
    for rep in range(args.repeat):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            run = await drive(calls[name], workload.requests, workload.concurrency, workload.per_request)
            runs[name].append(run)
            totals[name].add(run)
            print(f"{rep + 1:>3}  {name:<9} {run.event_rate:>9.0f} {run.rate:>8.0f} {ms(run.percentile(50)):>8} "
                  f"{ms(run.percentile(99)):>8} {run.failed:>6} {run.other:>7.0f}", flush=True)
    return runs


def print_medians(workload: Workload, runs: dict[str, list[Run]], repeat: int) -> None:
    print(f"\n{workload.name} (POST {workload.path}): medians of {repeat} repetitions, {workload.requests} requests "
          f"of {workload.per_request} event(s) each, concurrency {workload.concurrency}:")
    print(f"{'target':<9} {'events/s':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'events/s vs producer':>21} "
          f"{'other %':>7}")
    for name, rs in runs.items():
        ratio = statistics.median(a.event_rate / b.event_rate for a, b in zip(rs, runs["producer"]))
        print(f"{name:<9} {statistics.median(r.event_rate for r in rs):>9.0f} "
              f"{statistics.median(r.rate for r in rs):>8.0f} "
              f"{ms(statistics.median(r.percentile(50) for r in rs)):>8} "
              f"{ms(statistics.median(r.percentile(99) for r in rs)):>8} {ratio:>21.2f} "
              f"{statistics.median(r.other for r in rs):>7.0f}")


async def sweep(workload: Workload, calls: dict[str, Call], totals: dict[str, Total], levels: list[int],
                args) -> dict[int, dict[str, list[Run]]]:
    """Closed-loop runs of ``workload`` at each concurrency level; the order of the targets rotates."""
    names = list(calls)
    out: dict[int, dict[str, list[Run]]] = {}
    print(f"\n== sweep: POST {workload.path}, {args.sweep_events} requests per run, concurrency {levels}; {load()}")
    print(f"{'clients':>7} {'rep':>3}  {'target':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} "
          f"{'other %':>7}")
    for level in levels:
        out[level] = {name: [] for name in names}
        for rep in range(args.sweep_repeat):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                run = await drive(calls[name], args.sweep_events, level)
                out[level][name].append(run)
                totals[name].add(run)
                print(f"{level:>7} {rep + 1:>3}  {name:<9} {run.rate:>8.0f} {ms(run.percentile(50)):>8} "
                      f"{ms(run.percentile(99)):>8} {run.failed:>6} {run.other:>7.0f}", flush=True)
    return out


def print_sweep(result: dict[int, dict[str, list[Run]]], args) -> None:
    print(f"\nsweep (POST /v1/track, closed loop): medians of {args.sweep_repeat} repetitions, "
          f"{args.sweep_events} requests each:")
    print(f"{'clients':>7}  {'target':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'other %':>7}")
    for level, runs in result.items():
        for name, rs in runs.items():
            print(f"{level:>7}  {name:<9} {statistics.median(r.rate for r in rs):>8.0f} "
                  f"{ms(statistics.median(r.percentile(50) for r in rs)):>8} "
                  f"{ms(statistics.median(r.percentile(99) for r in rs)):>8} "
                  f"{statistics.median(r.other for r in rs):>7.0f}")


def print_paced(runs: list[Paced]) -> None:
    print(f"{'rate/s':>7} {'rep':>3} {'sent':>6} {'answered/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'late p99 ms':>11} {'failed':>6} {'other %':>7}  API produce time (its histogram)")
    for rep, p in enumerate(runs, 1):
        print(f"{p.rate:>7.0f} {rep:>3} {p.sent:>6} {p.answered_rate:>10.0f} {ms(percentile(p.latencies, 50)):>8} "
              f"{ms(percentile(p.latencies, 99)):>8} {ms(max(p.latencies)):>8} {ms(percentile(p.lateness, 99)):>11} "
              f"{p.failed:>6} {p.other:>7.0f}  {describe_histogram(p.produce) if p.produce else ''}", flush=True)


async def produce_histogram(url: str) -> dict[float, float]:
    """The API's ``clickstream_ingest_produce_seconds`` buckets: upper bound -> cumulative count."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        text = await response.text()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("clickstream_ingest_produce_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def histogram_delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    return {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}


def describe_histogram(buckets: dict[float, float]) -> str:
    """Bucket bounds of the median and the 99th percentile, and the share over 50 ms."""
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return "no produce"

    def bound(q: float) -> str:
        b = next(b for b, n in buckets.items() if n >= q * total)
        return "> 5 s" if b == float("inf") else f"<= {b * 1e3:g} ms"

    over_50 = 1 - buckets.get(0.05, 0.0) / total
    return f"p50 {bound(0.5)}, p99 {bound(0.99)}, {over_50:.1%} over 50 ms"


def freeze_garbage() -> None:
    """Move everything allocated so far (bodies, records, results) out of the cyclic GC's reach, so that
    the generator's own collections stay short and do not delay due requests."""
    gc.collect()
    gc.freeze()


async def measure(args, settings: Settings, base: Settings, urls: dict[str, str]) -> None:
    OTHER.start()
    loads = workloads(args)
    chosen = [loads[name] for name in args.workloads]
    levels = args.sweep
    connections = max([args.connections, args.concurrency, args.batch_concurrency, *levels])
    results: dict[str, dict[str, list[Run]]] = {}
    swept: dict[int, dict[str, list[Run]]] = {}
    paced_runs: dict[tuple[str, float], list[Paced]] = {}
    async with AsyncExitStack() as stack:
        producers = [AIOKafkaProducer(**{**producer_config(base), **args.producer_options})
                     for _ in range(base.api_producers)]
        for producer in producers:
            await producer.start()
            stack.push_async_callback(producer.stop)
        posts = {name: await open_http(args.client, url, connections, stack) for name, url in urls.items()}
        names = [n for n in TARGETS if n == "producer" or n in urls]
        totals = {name: Total() for name in names}
        topic = Topics.from_settings(base).raw
        partitions = sorted(await producers[0].partitions_for(topic))

        def calls_for(workload: Workload) -> dict[str, Call]:
            return {name: producer_call(producers, partitions, topic, base, workload) if name == "producer"
                    else http_call(posts[name], workload) for name in names}

        for workload in chosen:
            calls = calls_for(workload)
            freeze_garbage()
            results[workload.name] = await compare(workload, calls, totals, args)
            print_medians(workload, results[workload.name], args.repeat)

        peak = None
        if levels:
            track = loads["track"]
            calls = calls_for(track)
            if "track" not in args.workloads:  # not warmed up yet
                for name in names:
                    totals[name].add(await drive(calls[name], args.warmup, args.concurrency))
            freeze_garbage()
            swept = await sweep(track, calls, totals, levels, args)
            print_sweep(swept, args)
            peak = max(statistics.median(r.rate for r in swept[level]["api"]) for level in levels)
        rates = [args.paced_rate] if args.paced_rate else [f * peak for f in args.paced_fraction] if peak else []
        track = loads["track"]
        paced_calls = {name: producer_call(producers, partitions, topic, base, track) if name == "producer"
                       else http_call(posts[name], track) for name in args.paced_targets if name in names}
        for rate in rates:
            for name, call in paced_calls.items():
                print(f"\n== paced: POST /v1/track on the {name} at {rate:.0f} requests/s (open loop), "
                      f"{args.paced_repeat} x {args.paced_seconds:.0f} s, up to {connections} connections; {load()}")
                runs = paced_runs[(name, rate)] = []
                for _ in range(args.paced_repeat):
                    before = await produce_histogram(urls[name]) if name in urls else None
                    freeze_garbage()
                    p = await paced(call, rate, args.paced_seconds)
                    runs.append(p)
                    totals[name].add(Run(p.ok, p.failed, p.seconds, p.latencies, p.errors))
                    if before is not None:
                        p.produce = histogram_delta(before, await produce_histogram(urls[name]))
                print_paced(runs)

    for workload in chosen:
        print_medians(workload, results[workload.name], args.repeat)
    if swept:
        print_sweep(swept, args)
    if paced_runs:
        print("\npaced /v1/track (open loop; latency from each request's due time" +
              (f"; peak of the api in the sweep {peak:.0f} requests/s):" if peak else "):"))
        print(f"{'target':<9} {'rate/s':>7} {'answered/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'late p99 ms':>11} "
              f"{'failed':>6} {'other %':>7}  (medians; failed: sum)")
        for (name, rate), ps in paced_runs.items():
            print(f"{name:<9} {rate:>7.0f} {statistics.median(p.answered_rate for p in ps):>10.0f} "
                  f"{ms(statistics.median(percentile(p.latencies, 50) for p in ps)):>8} "
                  f"{ms(statistics.median(percentile(p.latencies, 99) for p in ps)):>8} "
                  f"{ms(statistics.median(percentile(p.lateness, 99) for p in ps)):>11} "
                  f"{sum(p.failed for p in ps):>6} {statistics.median(p.other for p in ps):>7.0f}")

    print("\ngoals:")
    if "batch" in results:
        rs = results["batch"]
        ratio = statistics.median(a.event_rate / b.event_rate for a, b in zip(rs["api"], rs["producer"]))
        print(f"  batch events/s >= 50% of the producer's: {ratio:.0%} "
              f"({statistics.median(r.event_rate for r in rs['api']):.0f} vs "
              f"{statistics.median(r.event_rate for r in rs['producer']):.0f}) -> {'met' if ratio >= 0.5 else 'NOT met'}")
    if peak is not None:
        print(f"  /v1/track >= 3,000 requests/s on one worker: peak {peak:.0f} (sweep {levels}) -> "
              f"{'met' if peak >= 3000 else 'NOT met'}")
    if peak is not None and 0.5 in args.paced_fraction and not args.paced_rate and "api" in args.paced_targets:
        ps = paced_runs[("api", 0.5 * peak)]
        p99 = statistics.median(percentile(p.latencies, 99) for p in ps)
        print(f"  p99 < 50 ms at half of the peak ({0.5 * peak:.0f} requests/s): {ms(p99)} ms -> "
              f"{'met' if p99 < 0.05 else 'NOT met'}")

    print(f"\nreading the topics back ({load()}):")
    for name, s in (("api", settings), ("producer", base)):
        topic = Topics.from_settings(s).raw
        count, distinct, size = await read_back(s, topic)
        # The baseline sends the same prepared records in every repetition; the API's event ids are unique.
        ok = count == totals[name].events and (name != "api" or distinct == count)
        print(f"  {name:<9} {topic}: {count} records ({distinct} distinct event ids, mean {size:.0f} bytes); "
              f"{totals[name].events} events acknowledged in {totals[name].ok} requests, "
              f"{totals[name].failed} requests failed -> {'OK' if ok else 'MISMATCH'}")
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


def serve(no_kafka: bool) -> None:
    """``clickstream api`` as it is (logging, uvicorn options), with :class:`NoKafka` as its producer,
    or with the ``--producer-option`` settings (passed in ``BENCH_PRODUCER_OPTIONS``) added to its producer's."""
    import ingest_api.main
    import ingest_api.producer

    if no_kafka:
        ingest_api.main.KafkaEventProducer = NoKafka
    options = json.loads(os.environ.get("BENCH_PRODUCER_OPTIONS", "{}"))
    ingest_api.producer.producer_config = lambda settings: {**producer_config(settings), **options}
    ingest_api.main.run(load_settings())


def producer_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. max_batch_size=262144")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string, e.g. compression_type=gzip


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def revision() -> str:
    """The commit the code runs at, and whether files outside bench/ differ from it."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # read only: git status must not refresh the index
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, env=env).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=root,
                                 capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}" + (f" + {len(changed)} changed/untracked files outside bench/" if changed else "")


def numbers(kind):
    def parse(text: str) -> list:
        return [kind(part) for part in text.split(",") if part.strip()]

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=lambda t: [w for w in t.split(",") if w], default=["page", "track", "batch"],
                        help="comma-separated: page, track, batch (default: all three)")
    parser.add_argument("--events", type=int, default=5000,
                        help="events (= requests) per target and repetition of the single-event workloads")
    parser.add_argument("--batch-events", type=int, default=20000, help="events per target and repetition of batch")
    parser.add_argument("--batch-size", type=int, default=100, help="track calls per /v1/batch request")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (medians are reported)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients / send tasks")
    parser.add_argument("--batch-concurrency", type=int, default=8, help="concurrent clients of the batch workload")
    parser.add_argument("--sweep", type=numbers(int), default=[8, 32, 64, 128],
                        help="client counts of the /v1/track sweep ('' skips the sweep and the paced runs)")
    parser.add_argument("--sweep-events", type=int, default=3000, help="requests per target and run of the sweep")
    parser.add_argument("--sweep-repeat", type=int, default=3, help="repetitions of each sweep level")
    parser.add_argument("--paced-fraction", type=numbers(float), default=[0.5],
                        help="paced arrival rates as fractions of the sweep's peak api requests/s")
    parser.add_argument("--paced-rate", type=float, help="one paced arrival rate in requests/s instead")
    parser.add_argument("--paced-targets", type=lambda t: [w for w in t.split(",") if w], default=["api", "producer"],
                        help="targets of the paced runs: api, producer, no-kafka (default api,producer)")
    parser.add_argument("--paced-seconds", type=float, default=20, help="length of each paced run")
    parser.add_argument("--paced-repeat", type=int, default=3, help="paced runs per rate")
    parser.add_argument("--connections", type=int, default=256,
                        help="keep-alive connections per target the client may open (paced runs use them)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured events per target and workload first")
    parser.add_argument("--visitors", type=int, default=1000, help="distinct visitor ids (the record keys)")
    parser.add_argument("--client", choices=["aiohttp", "httpx", "raw"], default="aiohttp",
                        help="HTTP client of the load generator (see the docstring)")
    parser.add_argument("--bootstrap", help="host:port of a running broker; default: start SeaweedFS + Tansu")
    parser.add_argument("--no-kafka-baseline", action="store_true", help="skip the API-without-Kafka runs")
    parser.add_argument("--producer-option", type=producer_option, action="append", default=[], metavar="KEY=VALUE",
                        help="an aiokafka producer setting added to producer_config, for the API and the baseline "
                             "alike (the API then runs through this script); repeatable")
    parser.add_argument("--serve-no-kafka", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-api", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_no_kafka or args.serve_api:  # the child process of the ``no-kafka`` or ``api`` target
        return serve(no_kafka=args.serve_no_kafka)
    args.producer_options = dict(args.producer_option)
    unknown = set(args.workloads) - {"page", "track", "batch"}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
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
        if args.producer_options:  # the API with these producer settings: its entry point, through this script
            components = [c if c.name != "api" else dataclasses.replace(
                c, command=[sys.executable, str(Path(__file__).resolve()), "--serve-api"],
                env={**c.env, "BENCH_PRODUCER_OPTIONS": json.dumps(args.producer_options)}) for c in components]
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
              f"bootstrap {settings.bootstrap_servers}; topics {settings.topic_prefix}*")
        print(f"producer settings (API and baseline): {producer_config(base) | args.producer_options}")
        print(f"started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC at {revision()}; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")

        def before_stage(stage: int) -> None:
            if stage == SERVICES_STAGE:
                for s in (settings, base):
                    asyncio.run(create_topics(s))

        supervisor = Supervisor(settings, components)
        started = time.perf_counter()
        try:
            supervisor.start(before_stage=before_stage)
            asyncio.run(measure(args, settings, base, urls))
        except StackError:
            for log in sorted(settings.logs_dir.glob("*.log")):  # the temporary directory goes away
                print(f"--- {log.name}\n{tail(log)}", file=sys.stderr)
            raise
        finally:
            supervisor.stop()
        print(f"\nfinished {datetime.now(timezone.utc):%H:%M:%S} UTC after {time.perf_counter() - started:.0f} s; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
