"""Benchmark: the lake sink's rows/s from Kafka to Parquet on S3, against pyarrow writing the same rows.

Measured in one run, on one machine, against one SeaweedFS and one Tansu broker (its log on
that SeaweedFS, as ``clickstream up`` runs it), both started here on free loopback ports:

* ``sink``     -- the real sink (``python -m clickstream sink``, its own process, settings through
                  ``CLICKSTREAM_*`` as the launcher passes them) reads ``--events`` events from the
                  events topic (4 partitions) into a fresh bucket. Timed from the moment its health
                  endpoint answers (process start-up excluded; joining the group, fetching, decoding,
                  encoding, uploading and committing included) until the committed offsets of every
                  partition reach the end the producer was acknowledged for. It fetches with its
                  default ``CLICKSTREAM_SINK_CONSUMERS`` (its group consumer and one helper) unless
                  ``--sink-consumers`` says otherwise;
* ``sink-1``   -- the same with ``CLICKSTREAM_SINK_CONSUMERS=1``: one consumer fetches every partition.
* ``pyarrow``  -- the baseline: the same rows (built before timing with the sink's own row builder,
                  ``sink.tables.TABLES[0].row``), cut into exactly the objects that sink run wrote
                  (same partition, offset range and hour, so the same row counts), each
                  ``pa.Table.from_pylist`` -> ``pq.write_table`` (zstd) -> ``LakeDestination.put`` into
                  another fresh bucket of the same SeaweedFS, one after the other as the sink does.
* ``sink-no-kafka`` -- the sink's own code (``sink.main.LakeSink``: ``add_all`` then ``flush_due``, so
                  the vectorised decoding of each flush, encoding and ``LakeDestination.put``) fed the records of
                  those same objects from memory, with a consumer whose commit does nothing: the
                  sink with Kafka for free, to compare with pyarrow on equal terms.
* ``consume``  -- a plain ``AIOKafkaConsumer`` (no group, the sink's fetch size per partition) reading the topic
                  to its end with ``getmany``; ``consume+decode`` also runs ``Event.from_bytes`` on
                  every record. They show how much of the sink's time Kafka and decoding take.
                  ``consume-5-topics`` is ``consume`` with the partitions of the sink's four other
                  (empty) topics assigned too, as the sink reads them. ``consume-5x2`` is that with
                  two consumers side by side, each assigned half of the partitions.

Each repetition runs the eight in turn (the order rotates; the two that need the sink's objects
run after it); the figures are medians over ``--repeat`` repetitions, and the ratio is the
median of each repetition's rows/s over pyarrow's. Before the sink runs again its consumer
group is rewound to offset 0, and each run writes to a bucket of its own (otherwise the sink
would rightly skip rows already in the lake). The sink's line also says when it joined its
group and first committed (the sink's log, and the offsets polled every 0.25 s), its rate from
the moment it had its partitions (``sink, joined`` in the summary: without the group join, which
Tansu answers after half the session timeout, 3 s for the sink's 6 s) and its rate from the
first commit on.

The events are produced with the services' producer settings (``producer_config``) and batches of
up to 512 KB, as the stream processor's Faust producer writes ``clickstream.events``
(``producer_max_batch_size``). Tansu keeps each produced batch in its S3 log, so the batch size
sets how many S3 reads a fetch costs; ``--batch-kb 16`` (aiokafka's default) shows the effect.

A CPU profile without any I/O (``--no-profile`` skips it) prices each step per row on a sample of
the same records: per-record decoding, the row builder and ``from_pylist`` (what the sink did
before its vectorised decoding, which is priced beside them), Parquet encoding, and the sink's
whole in-memory path (``LakeSink.add_all`` + ``flush_due`` with a destination that drops the bytes).

The events resemble what the stream processor writes to ``clickstream.events``: built by the
API's own ``build_event`` from Segment-style page, track and identify calls (user agents, UTM
parameters, referrers, ``context.page``/``library``/``screen``, product and order properties), then
given a visitor, a session id and an event time over the last ``--span-minutes``.

The machine is shared: each measurement reports the CPU that processes other than this
benchmark's (itself, SeaweedFS, Tansu, the sink) used meanwhile, in cores. Run it by hand from
the project root; it is not part of the test suite:

    .venv/bin/python bench/sink.py
    .venv/bin/python bench/sink.py --events 1000000 --flush-interval 1 --no-profile
    .venv/bin/python bench/sink.py --events 100000 --repeat 2 --batch-kb 16 --keep-logs /tmp/sink-logs

The sink's time includes joining its consumer group (about 3 s on Tansu) and waiting for its flush
interval, so a short run understates its rate; the rate from its first commit on is printed too.
``--tansu-storage memory://`` keeps the broker's log in memory instead of on S3: a diagnostic of
what reading that log costs, not how the stack runs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchkit import TICK, busy_ticks, process_tree, with_tansu_storage  # bench/benchkit.py, beside this file

# This file is bench/sink.py: as a script its folder comes first on sys.path and would shadow
# the ``sink`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clickstream.events import Event
from clickstream.kafka import create_topics, producer_config
from clickstream.lake import EVENTS, parse_object_key, partition_prefix
from clickstream.settings import Settings
from clickstream.stack.components import Component, stack_components
from clickstream.stack.probes import free_port, free_port_pair, http_ok
from clickstream.stack.servers import GRPC_OFFSET
from clickstream.stack.supervisor import StackError, Supervisor, tail
from clickstream.topics import Topics
from ingest_api.enrich import Requester, build_event, parse_incoming
from sink.destination import LakeDestination
from sink.main import FETCH_BYTES_PER_PARTITION, LakeSink
from sink.tables import TABLES

SPEC = TABLES[0]  # events
assert SPEC.table == EVENTS

# --- shared-machine accounting -----------------------------------------------------------------------

def _process_ticks(pid: int) -> int:
    """user + system ticks of a process itself (benchkit.process_ticks adds its reaped children;
    this script's figures were taken without them)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime + stime
    except (OSError, IndexError):
        return 0


NAMED: dict[str, int] = {}  # label -> pid of the processes whose CPU is reported by name


class CpuMeter:
    """Cores used over an interval: by the whole machine, by this benchmark's process tree
    (itself, SeaweedFS, Tansu, the sink), by each process of :data:`NAMED` and by everything else."""

    def __init__(self, **named: int):
        self.named = {**NAMED, **named}

    def __enter__(self) -> CpuMeter:
        self.pids = process_tree(os.getpid())
        self.start = time.monotonic(), busy_ticks(), {p: _process_ticks(p) for p in self.pids}
        return self

    def refresh(self) -> None:
        """Count processes started since (e.g. the sink) from their start."""
        for pid in process_tree(os.getpid()) - self.pids:
            self.pids.add(pid)
            self.start[2][pid] = 0

    def __exit__(self, *exc) -> None:
        self.refresh()
        t0, busy0, own0 = self.start
        seconds = max(time.monotonic() - t0, 1e-9)
        used = {p: (_process_ticks(p) - own0.get(p, 0)) / TICK / seconds for p in self.pids}
        self.machine = (busy_ticks() - busy0) / TICK / seconds
        self.ours = sum(used.values())
        self.others = max(0.0, self.machine - self.ours)
        self.by_name = {name: used.get(pid, 0.0) for name, pid in self.named.items()}

    def describe(self) -> str:
        return "CPU " + ", ".join(f"{name} {cores:.2f}" for name, cores in self.by_name.items() if cores >= 0.005)


# --- events --------------------------------------------------------------------------------------

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
PAGES = ["/", "/pricing", "/features", "/blog", "/blog/launch", "/docs", "/docs/install", "/signup", "/login",
         "/checkout", "/cart", "/products/alpha", "/products/beta", "/about", "/contact"]
REFERRERS = [None, None, "https://www.google.com/", "https://news.ycombinator.com/", "https://twitter.com/",
             "https://shop.example/", "https://www.bing.com/search?q=shop"]
UTM = [None, None, None, ("newsletter", "email", "spring"), ("google", "cpc", "brand"), ("twitter", "social", "launch")]
TRACKS = ["Product Viewed", "Product Added", "Signup Started", "Experiment Viewed", "Order Completed",
          "Element Clicked"]


def call_body(rng: random.Random, i: int) -> tuple[dict, str]:
    """One Segment call as a browser or SDK would send it, and its type."""
    path = rng.choice(PAGES)
    utm = rng.choice(UTM)
    query = f"?utm_source={utm[0]}&utm_medium={utm[1]}&utm_campaign={utm[2]}" if utm else ""
    url = f"https://shop.example{path}{query}"
    title = path.strip("/").replace("/", " - ").title() or "Home"
    referrer = rng.choice(REFERRERS)
    context = {
        "userAgent": rng.choice(AGENTS),
        "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
        "locale": rng.choice(["en-US", "de-DE", "fr-FR", "en-GB"]),
        "timezone": rng.choice(["Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
        "library": {"name": "analytics.js", "version": "4.1.0"},
        "page": {"path": path, "url": url, "title": title, "referrer": referrer or "", "search": query},
        "screen": {"width": rng.choice([390, 1440, 1920]), "height": rng.choice([844, 900, 1080]), "density": 2},
    }
    visitor = {"anonymousId": str(uuid.UUID(int=rng.getrandbits(128)))}
    kind = rng.random()
    if kind < 0.6:
        return {**visitor, "name": title, "properties": {"url": url, "path": path, "title": title,
                                                         "referrer": referrer, "search": query},
                "context": context}, "page"
    if kind < 0.97:
        name = rng.choice(TRACKS)
        props: dict = {"product_id": f"sku-{rng.randrange(500)}", "category": rng.choice(["tools", "books"]),
                       "price": round(rng.uniform(5, 200), 2), "currency": "EUR"}
        if name == "Experiment Viewed":
            props = {"experimentId": "checkout-test", "experimentName": "Checkout test",
                     "variationName": rng.choice(["control", "one-page"])}
        elif name == "Order Completed":
            props = {"order_id": f"o-{i}", "revenue": round(rng.uniform(10, 500), 2), "currency": "EUR",
                     "products": [{"product_id": f"sku-{rng.randrange(500)}", "quantity": rng.randint(1, 3)}
                                  for _ in range(rng.randint(1, 3))]}
        elif name == "Element Clicked":
            props = {"element": rng.choice(["signup", "buy", "nav-docs"]), "path": path}
        return {**visitor, "event": name, "properties": props, "context": context}, "track"
    return {**visitor, "userId": f"user-{i}", "traits": {"email": f"user{i}@example.com", "plan": "pro",
                                                        "company": {"name": "Acme", "employees": 40}},
            "context": context}, "identify"


def make_events(n: int, visitors: int, span: timedelta, seed: int = 7) -> list[Event]:
    """``n`` events in time order over the ``span`` before now, like the processor's output."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    requester = Requester(ip="127.0.0.1", user_agent=AGENTS[0])
    templates = []
    for i in range(2000):
        body, kind = call_body(rng, i)
        templates.append(build_event(parse_incoming(body, kind), source="web", received_at=now, requester=requester))
    start = now - span
    step = span / n
    events = []
    for i in range(n):
        v = rng.randrange(visitors)
        at = start + step * i
        visitor = f"anon-{v:06d}"
        session = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{visitor}|{i // 5000}"))
        events.append(rng.choice(templates).model_copy(update={
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "anonymous_id": visitor,
            "session_id": session, "timestamp": at, "received_at": at + timedelta(milliseconds=40),
        }))
    return events


# --- Kafka ---------------------------------------------------------------------------------------

@dataclass
class Produced:
    events: dict[tuple[int, int], Event]  # (partition, offset) -> event
    ends: dict[int, int]  # partition -> last acknowledged offset + 1
    seconds: float
    bytes: int


async def produce(settings: Settings, topic: str, events: list[Event], batch_bytes: int) -> Produced:
    """Every event to ``topic``, keyed by visitor, with the services' producer settings (and this batch size)."""
    producer = AIOKafkaProducer(**{**producer_config(settings), "max_batch_size": batch_bytes})
    await producer.start()
    placed: dict[tuple[int, int], Event] = {}
    size = 0
    start = time.perf_counter()
    try:
        chunk = 5000
        for first in range(0, len(events), chunk):
            futures = []
            for e in events[first:first + chunk]:
                value = e.to_bytes()
                size += len(value)
                futures.append((e, await producer.send(topic, value=value, key=e.visitor_id.encode())))
            for e, future in futures:
                meta = await future
                placed[(meta.partition, meta.offset)] = e
    finally:
        await producer.stop()
    ends: dict[int, int] = {}
    for partition, offset in placed:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return Produced(placed, ends, time.perf_counter() - start, size)


async def consume_all(settings: Settings, topic: str, ends: dict[int, int], decode: bool,
                      also: tuple[str, ...] = (), share: tuple[int, int] = (0, 1)) -> tuple[int, float]:
    """Read the topic from the start to ``ends`` with a plain consumer (the sink's fetch defaults);
    ``also``: other topics whose partitions the consumer is assigned too, as the sink is;
    ``share`` (i, n): of those other topics, only the partitions p with p % n == i."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        others = [TopicPartition(t, p) for t in also for p in range(settings.topic_partitions)
                  if p % share[1] == share[0]]
        consumer.assign(tps + others)
        await consumer.seek_to_beginning(*tps)
        count, start = 0, time.perf_counter()
        positions = {p: 0 for p in ends}
        while any(positions[p] < ends[p] for p in ends):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if decode:
                        SPEC.decode(record.value)
                    count += 1
                if records:
                    positions[tp.partition] = records[-1].offset + 1
        return count, time.perf_counter() - start
    finally:
        await consumer.stop()


async def consume_split(settings: Settings, topic: str, ends: dict[int, int], also: tuple[str, ...],
                        ways: int = 2) -> tuple[int, float]:
    """``consume_all`` by ``ways`` consumers side by side, each with its share of the partitions:
    aiokafka keeps one fetch in flight per broker and consumer, so this shows whether reading is
    bound by the broker's work or by the latency of one fetch at a time."""
    shares = [{p: end for p, end in ends.items() if p % ways == i} for i in range(ways)]
    results = await asyncio.gather(*(consume_all(settings, topic, part, False, also, (i, ways))
                                     for i, part in enumerate(shares) if part))
    return sum(count for count, _ in results), max(seconds for _, seconds in results)


async def rewind_group(settings: Settings, topic: str, partitions: int) -> None:
    """Commit offset 0 for the sink's group on every partition (Tansu takes commits from members only)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers,
                                group_id=Topics.from_settings(settings).group("sink"), enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while len(consumer.assignment()) < partitions:
            if time.monotonic() > deadline:
                raise RuntimeError("could not join the sink's group to rewind it")
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({tp: 0 for tp in consumer.assignment()})
    finally:
        await consumer.stop()


# --- the sink ------------------------------------------------------------------------------------

@dataclass
class SinkRun:
    rows: int
    seconds: float  # health answered -> all committed
    startup: float  # process start -> health answered
    first_commit: float  # health answered -> first commit seen
    steady: float  # rows/s from the first commit seen to the last
    joined: float | None  # health answered -> the sink's consumer got its partitions (from its log)
    objects: list  # ObjectInfo of what it wrote
    stats: dict
    cpu: CpuMeter | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def after_join(self) -> float:
        """Rows/s from the moment the sink had its partitions: without the group join, which the
        broker times (Tansu answers a new group's first JoinGroup after half the session timeout)."""
        return self.rows / (self.seconds - self.joined) if self.joined is not None else float("nan")


async def run_sink(settings: Settings, produced: Produced, log_path: Path, poll_s: float = 0.25) -> SinkRun:
    topic = Topics.from_settings(settings).events
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    env["PYTHONUNBUFFERED"] = "1"
    url = settings.url(settings.sink_port) + "/health"
    watcher = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                               group_id=Topics.from_settings(settings).group("sink"), enable_auto_commit=False)
    await watcher.start()
    tps = [TopicPartition(topic, p) for p in produced.ends]
    with open(log_path, "ab") as out:
        spawned = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "clickstream", "sink"], env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not await asyncio.to_thread(http_ok, url, 0.5):
            if process.poll() is not None:
                raise RuntimeError(f"the sink exited with {process.returncode}:\n{tail(log_path)}")
            await asyncio.sleep(0.05)
        with CpuMeter(sink=process.pid) as cpu:
            ready, ready_wall = time.perf_counter(), time.time()
            first_commit, first_rows = None, 0
            deadline = ready + 1800
            while True:
                offsets = {tp.partition: (await watcher.committed(tp)) or 0 for tp in tps}
                now = time.perf_counter()
                if first_commit is None and any(offsets.values()):
                    first_commit, first_rows = now, sum(offsets.values())
                if all(offsets[p] >= end for p, end in produced.ends.items()):
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"the sink exited with {process.returncode}:\n{tail(log_path)}")
                if now > deadline:
                    raise RuntimeError(f"the sink did not commit everything in time: {offsets} < {produced.ends}")
                cpu.refresh()
                await asyncio.sleep(poll_s)
            done = now
        stats = json.loads(await asyncio.to_thread(_get, url))
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        await watcher.stop()
    objects = LakeDestination.from_settings(settings).list_objects(EVENTS + "/")
    first_commit = first_commit or done
    steady = (len(produced.events) - first_rows) / (done - first_commit) if done > first_commit else float("nan")
    joined = logged_at(log_path, "Setting newly assigned partitions")
    return SinkRun(len(produced.events), done - ready, ready - spawned, first_commit - ready, steady,
                   None if joined is None else joined - ready_wall, objects, stats, cpu)


def logged_at(log_path: Path, text: str) -> float | None:
    """Wall-clock time of the last line of the sink's log containing ``text`` (its asctime, local time)."""
    found = None
    for line in log_path.read_text(errors="replace").splitlines():
        if text in line:
            try:
                found = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                pass
    return found


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


# --- the pyarrow baseline ------------------------------------------------------------------------

@dataclass
class Planned:
    key: str
    rows: list[dict]


def same_objects(objects, produced: Produced) -> list[Planned]:
    """The rows of each object the sink wrote, rebuilt from the produced events (before timing)."""
    planned = []
    for info in sorted(objects, key=lambda o: o.key):
        parsed = parse_object_key(info.key)
        if parsed is None:
            continue
        (partition, first, last), = parsed[1]  # the sink writes one partition per object
        hour = info.key.rsplit("/", 1)[0]
        rows = []
        for offset in range(first, last + 1):
            event = produced.events.get((partition, offset))
            if event is not None and partition_prefix(EVENTS, SPEC.partition_time(event)) == hour:
                rows.append(SPEC.row(event))
        planned.append(Planned(info.key, rows))
    return planned


@dataclass
class BaselineRun:
    rows: int
    seconds: float
    arrow_s: float
    parquet_s: float
    put_s: float
    bytes: int
    cpu: CpuMeter | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def write_with_pyarrow(destination: LakeDestination, planned: list[Planned]) -> BaselineRun:
    destination.ensure_ready()
    arrow_s = parquet_s = put_s = 0.0
    rows = size = 0
    with CpuMeter() as cpu:
        start = time.perf_counter()
        for obj in planned:
            t0 = time.perf_counter()
            table = pa.Table.from_pylist(obj.rows, schema=SPEC.schema)
            t1 = time.perf_counter()
            out = io.BytesIO()
            pq.write_table(table, out, compression="zstd")
            data = out.getvalue()
            t2 = time.perf_counter()
            destination.put(obj.key, data)
            t3 = time.perf_counter()
            arrow_s += t1 - t0
            parquet_s += t2 - t1
            put_s += t3 - t2
            rows += len(obj.rows)
            size += len(data)
        seconds = time.perf_counter() - start
    return BaselineRun(rows, seconds, arrow_s, parquet_s, put_s, size, cpu)


def sink_without_kafka(settings: Settings, topic: str, produced: Produced, planned: list[Planned]) -> BaselineRun:
    """The sink's own code (``LakeSink.add_all`` and ``flush_due``: decode, row builder, encode, upload) on the
    records of the same objects, handed over from memory: the sink with Kafka for free."""
    destination = LakeDestination.from_settings(settings)
    destination.ensure_ready()
    batches = []
    for obj in planned:
        (partition, first, last), = parse_object_key(obj.key)[1]
        batches.append((TopicPartition(topic, partition),
                        [FakeRecord(topic, partition, o, produced.events[(partition, o)].to_bytes())
                         for o in range(first, last + 1) if (partition, o) in produced.events]))
    sink = LakeSink(settings, NullConsumer(), destination)

    async def go() -> None:
        for tp, batch in batches:
            sink.add_all(tp, batch)
            await sink.flush_due(force=True)

    with CpuMeter() as cpu:
        start = time.perf_counter()
        asyncio.run(go())
        seconds = time.perf_counter() - start
    return BaselineRun(sink.stats["rows.events"], seconds, 0.0, 0.0, 0.0, 0, cpu)


# --- CPU profile without I/O ---------------------------------------------------------------------

@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes


class NullConsumer:
    async def commit(self, offsets) -> None:
        return None


class NullDestination:
    def __init__(self):
        self.bytes = 0

    def put(self, key: str, data: bytes) -> None:
        self.bytes += len(data)

    def list_keys(self, prefix: str) -> list[str]:
        return []


def profile(settings: Settings, topic: str, produced: Produced, sample: int) -> dict[str, float]:
    """Microseconds per row of each step, on ``sample`` records of partition 0, without any I/O."""
    records = sorted(((p, o), e) for (p, o), e in produced.events.items() if p == 0)[:sample]
    values = [e.to_bytes() for _, e in records]

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best / len(values) * 1e6

    decoded = [SPEC.decode(v) for v in values]
    rows = [SPEC.row(e) for e in decoded]
    table = pa.Table.from_pylist(rows, schema=SPEC.schema)
    out: dict[str, float] = {
        "Event.from_bytes": timed(lambda: [SPEC.decode(v) for v in values]),
        "row builder": timed(lambda: [SPEC.row(e) for e in decoded]),
        "pa.Table.from_pylist": timed(lambda: pa.Table.from_pylist(rows, schema=SPEC.schema)),
        "pq.write_table (zstd)": timed(lambda: pq.write_table(table, io.BytesIO(), compression="zstd")),
        # what the sink does instead of the first three steps (sink/columnar.py)
        "vectorised decode to a table": timed(lambda: SPEC.columnar().decode(values)),
    }

    def whole_sink() -> None:
        sink = LakeSink(settings, NullConsumer(), NullDestination())

        by_partition: dict[int, list[FakeRecord]] = {}
        for ((partition, offset), _event), value in zip(records, values):
            by_partition.setdefault(partition, []).append(FakeRecord(topic, partition, offset, value))

        async def go() -> None:
            for partition, batch in by_partition.items():
                sink.add_all(TopicPartition(topic, partition), batch)
            await sink.flush_due(force=True)

        asyncio.run(go())

    out["LakeSink.add_all + flush (no I/O)"] = timed(whole_sink)
    return out


# --- reporting -----------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


@dataclass
class Rep:
    sink: SinkRun | None = None
    one: SinkRun | None = None  # the sink fetching with one consumer
    base: BaselineRun | None = None
    free: BaselineRun | None = None
    consume: tuple[int, float, CpuMeter] | None = None
    decode: tuple[int, float, CpuMeter] | None = None
    wide: tuple[int, float, CpuMeter] | None = None
    split: tuple[int, float, CpuMeter] | None = None
    order: list[str] = field(default_factory=list)


def fmt(x: float) -> str:
    return f"{x:,.0f}"


async def measure(args, settings: Settings, tmp: Path) -> None:
    topics = Topics.from_settings(settings)
    await create_topics(settings)
    print(f"generating {args.events:,} events ...", flush=True)
    t0 = time.perf_counter()
    events = make_events(args.events, args.visitors, timedelta(minutes=args.span_minutes))
    print(f"  {time.perf_counter() - t0:.1f} s")
    print(f"producing them to {topics.events} ...", flush=True)
    produced = await produce(settings, topics.events, events, args.batch_kb * 1024)
    del events
    print(f"  {len(produced.events):,} records, {produced.bytes / len(produced.events):.0f} bytes each on average, "
          f"{produced.seconds:.1f} s ({len(produced.events) / produced.seconds:,.0f}/s); "
          f"ends {dict(sorted(produced.ends.items()))}", flush=True)

    if not args.no_profile:
        print(f"\nCPU per row without I/O ({args.profile_sample:,} records of partition 0, best of 3):")
        # In a thread: the sink's own path runs on an event loop of its own (asyncio.run).
        steps = await asyncio.to_thread(profile, settings, topics.events, produced, args.profile_sample)
        for step, us in steps.items():
            print(f"  {step:<32} {us:7.1f} us/row  ({1e6 / us:>9,.0f} rows/s on one core)")

    reps: list[Rep] = []
    names = ["sink", "sink-1", "pyarrow", "sink-no-kafka", "consume", "consume+decode", "consume-5-topics", "consume-5x2"]
    sink_topics = [topics.events, topics.invalid, topics.sessions, topics.metrics, topics.reactions]
    print(f"\n{'rep':>3}  {'target':<15} {'rows/s':>9} {'seconds':>8} {'other CPU':>9}  notes", flush=True)
    sink_runs = 0
    for r in range(args.repeat):
        rep = Rep()
        reps.append(rep)
        sink_settings = settings.model_copy(update={"s3_bucket": f"bench-sink-{r}", "sink_port": free_port()})
        order = names[r % len(names):] + names[:r % len(names)]
        # The baseline and the Kafka-free sink write the objects of this repetition's sink run: after it.
        for after in ("sink-no-kafka", "pyarrow"):
            if order.index(after) < order.index("sink"):
                order.remove(after)
                order.insert(order.index("sink") + 1, after)
        rep.order = order
        for name in order:
            if name in ("sink", "sink-1"):
                if sink_runs:
                    await rewind_group(settings, topics.events, len(produced.ends))
                sink_runs += 1
                if name == "sink":
                    rep.sink = run = await run_sink(sink_settings, produced, tmp / f"sink-{r}.log")
                else:
                    one_settings = settings.model_copy(update={
                        "s3_bucket": f"bench-sink1-{r}", "sink_port": free_port(), "sink_consumers": 1})
                    rep.one = run = await run_sink(one_settings, produced, tmp / f"sink1-{r}.log")
                sizes = [o.size for o in run.objects]
                print(f"{r + 1:>3}  {name:<15} {fmt(run.rate):>9} {run.seconds:>8.1f} {run.cpu.others:>9.2f}  "
                      f"start-up {run.startup:.1f} s, joined the group after {run.joined or float('nan'):.1f} s, "
                      f"{fmt(run.after_join)} rows/s from then on, first commit after {run.first_commit:.1f} s, "
                      f"then {fmt(run.steady)} rows/s, "
                      f"{len(sizes)} objects (median {statistics.median(sizes) / 1e6:.1f} MB), "
                      f"rows.events={run.stats.get('rows.events')}; {run.cpu.describe()}", flush=True)
            elif name == "pyarrow":
                planned = same_objects(rep.sink.objects, produced)
                base_settings = settings.model_copy(update={"s3_bucket": f"bench-pyarrow-{r}"})
                run = write_with_pyarrow(LakeDestination.from_settings(base_settings), planned)
                rep.base = run
                print(f"{r + 1:>3}  {'pyarrow':<15} {fmt(run.rate):>9} {run.seconds:>8.1f} {run.cpu.others:>9.2f}  "
                      f"from_pylist {run.arrow_s:.1f} s, write_table {run.parquet_s:.1f} s, put {run.put_s:.1f} s, "
                      f"{run.bytes / 1e6:.0f} MB in {len(planned)} objects; {run.cpu.describe()}", flush=True)
            elif name == "sink-no-kafka":
                planned = same_objects(rep.sink.objects, produced)
                free_settings = settings.model_copy(update={"s3_bucket": f"bench-nokafka-{r}"})
                run = await asyncio.to_thread(sink_without_kafka, free_settings, topics.events, produced, planned)
                rep.free = run
                print(f"{r + 1:>3}  {name:<15} {fmt(run.rate):>9} {run.seconds:>8.1f} {run.cpu.others:>9.2f}  "
                      f"{run.rows:,} rows; {run.cpu.describe()}", flush=True)
            else:
                decode = name == "consume+decode"
                also = sink_topics[1:] if name.startswith("consume-5") else ()
                with CpuMeter() as cpu:
                    if name == "consume-5x2":
                        count, seconds = await consume_split(settings, topics.events, produced.ends, also)
                    else:
                        count, seconds = await consume_all(settings, topics.events, produced.ends, decode, also)
                setattr(rep, {"consume+decode": "decode", "consume-5-topics": "wide", "consume-5x2": "split"}.get(
                    name, "consume"), (count, seconds, cpu))
                print(f"{r + 1:>3}  {name:<15} {fmt(count / seconds):>9} {seconds:>8.1f} {cpu.others:>9.2f}  "
                      f"{count:,} records; {cpu.describe()}", flush=True)

    print(f"\nmedians of {args.repeat} repetitions, {len(produced.events):,} events "
          f"(flush interval {settings.flush_interval_s:g} s, flush max {settings.flush_max_bytes / 2**20:.0f} MiB, "
          f"sink consumers {settings.sink_consumers}):")
    print(f"{'target':<15} {'rows/s':>9} {'seconds':>8} {'other CPU':>9} {'vs pyarrow':>10}")
    base_rates = [rep.base.rate for rep in reps]
    rows = [
        ("sink", [rep.sink.rate for rep in reps], [rep.sink.seconds for rep in reps],
         [rep.sink.cpu.others for rep in reps]),
        ("sink-1", [rep.one.rate for rep in reps], [rep.one.seconds for rep in reps],
         [rep.one.cpu.others for rep in reps]),
        ("sink, joined", [rep.sink.after_join for rep in reps], [rep.sink.seconds - rep.sink.joined for rep in reps],
         [rep.sink.cpu.others for rep in reps]),
        ("sink-1, joined", [rep.one.after_join for rep in reps], [rep.one.seconds - rep.one.joined for rep in reps],
         [rep.one.cpu.others for rep in reps]),
        ("pyarrow", base_rates, [rep.base.seconds for rep in reps], [rep.base.cpu.others for rep in reps]),
        ("sink-no-kafka", [rep.free.rate for rep in reps], [rep.free.seconds for rep in reps],
         [rep.free.cpu.others for rep in reps]),
        ("consume", [rep.consume[0] / rep.consume[1] for rep in reps], [rep.consume[1] for rep in reps],
         [rep.consume[2].others for rep in reps]),
        ("consume+decode", [rep.decode[0] / rep.decode[1] for rep in reps], [rep.decode[1] for rep in reps],
         [rep.decode[2].others for rep in reps]),
        ("consume-5-topics", [rep.wide[0] / rep.wide[1] for rep in reps], [rep.wide[1] for rep in reps],
         [rep.wide[2].others for rep in reps]),
        ("consume-5x2", [rep.split[0] / rep.split[1] for rep in reps], [rep.split[1] for rep in reps],
         [rep.split[2].others for rep in reps]),
    ]
    for name, rates, seconds, others in rows:
        ratio = statistics.median(a / b for a, b in zip(rates, base_rates))
        print(f"{name:<15} {fmt(statistics.median(rates)):>9} {statistics.median(seconds):>8.1f} "
              f"{statistics.median(others):>9.2f} {ratio:>10.2f}")
    ratio = statistics.median(rep.sink.rate / rep.base.rate for rep in reps)
    print(f"\ngoal: sink >= 70% of pyarrow -> {ratio:.0%}: {'MET' if ratio >= 0.7 else 'NOT MET'}")
    # Exactly once, checked: every run wrote every row once.
    for r, rep in enumerate(reps):
        for name, run in (("sink", rep.sink), ("sink-1", rep.one)):
            written = run.stats.get("rows.events")
            if written != len(produced.events):
                print(f"  WARNING: repetition {r + 1}: {name} reported {written} rows for {len(produced.events)} events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events on the topic")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (medians are reported)")
    parser.add_argument("--visitors", type=int, default=20_000, help="distinct visitors (the record keys)")
    parser.add_argument("--span-minutes", type=float, default=30, help="event times spread over this much of the past")
    parser.add_argument("--flush-interval", type=float, default=5, help="the sink's CLICKSTREAM_FLUSH_INTERVAL_S")
    parser.add_argument("--flush-max-mb", type=float, default=256, help="the sink's CLICKSTREAM_FLUSH_MAX_BYTES, in MiB")
    parser.add_argument("--batch-kb", type=int, default=512,
                        help="the producer's max batch size (aiokafka's and Faust's default: 16 KB)")
    parser.add_argument("--sink-consumers", type=int,
                        help="the sink's CLICKSTREAM_SINK_CONSUMERS (default: its default; sink-1 always uses 1)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topic")
    parser.add_argument("--profile-sample", type=int, default=20_000, help="records in the CPU profile")
    parser.add_argument("--no-profile", action="store_true", help="skip the CPU profile without I/O")
    parser.add_argument("--tansu-storage", help="Tansu's --storage-engine instead of its S3 log, e.g. memory://")
    parser.add_argument("--keep-logs", type=Path, help="copy the sink's, SeaweedFS's and Tansu's logs to this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clickstream.sink").setLevel(logging.WARNING)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        settings = Settings(
            _env_file=None, broker_port=free_port(), s3_port=free_port_pair(GRPC_OFFSET), state_dir=Path(tmp),
            topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", topic_partitions=args.partitions,
            flush_interval_s=args.flush_interval, flush_max_bytes=int(args.flush_max_mb * 2**20),
            demo_write_key="bench-write-key",
            **({"sink_consumers": args.sink_consumers} if args.sink_consumers else {}),
        )
        components: list[Component] = with_tansu_storage(
            [c for c in stack_components(settings) if c.name in ("s3", "broker")], args.tansu_storage)
        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}, "
              f"pyarrow {pa.__version__}, load average {os.getloadavg()[0]:.2f}")
        print(f"SeaweedFS s3 :{settings.s3_port}, Tansu {settings.bootstrap_servers} (log on {args.tansu_storage or 'S3'}), "
              f"topics {settings.topic_prefix}*\n", flush=True)
        supervisor = Supervisor(settings, components)
        try:
            supervisor.start()
            NAMED.update({"bench": os.getpid(), "seaweedfs": supervisor.children["s3"].process.pid,
                          "tansu": supervisor.children["broker"].process.pid})
            asyncio.run(measure(args, settings, Path(tmp)))
        except (StackError, RuntimeError):
            for log in sorted(Path(tmp).rglob("*.log")):
                print(f"--- {log.name}\n{tail(log)}", file=sys.stderr)
            raise
        finally:
            supervisor.stop()
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).rglob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s, load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
