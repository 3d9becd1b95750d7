"""Benchmark: one stream-processor worker's throughput, reaction latency and state size.

Measured in one run, on one machine, against one SeaweedFS and one Tansu broker (its log on that
SeaweedFS, as ``clickstream up`` runs it), both started here on free loopback ports:

* ``throughput`` -- ``--events`` realistic events (about 470 bytes, ``--visitors`` visitors with one
  session of 1-7 events each, event times over the last ``--span-minutes``, delivered in time
  order) are produced to a fresh ``clickstream.raw`` (4 partitions, keyed by ``Event.device_key``
  as the API keys them, ``--batch-kb`` producer batches). Then the real worker
  (``python -m clickstream processor``, its own process, settings through ``CLICKSTREAM_*``) is
  started and timed from its first output (``events_out`` on its ``/health`` leaving 0: a
  checkpoint's outputs acknowledged) until ``events_out`` reaches the number of events. Its
  consumer group's committed offsets reaching the end are waited for and reported too.
  The baselines, in the same repetition and on the same topic: a plain ``AIOKafkaConsumer``
  (aiokafka's fetch defaults, no group) reading the topic to its end (``consume``), plus
  ``json.loads`` of every value (``consume+json``; orjson when installed), plus
  ``Event.from_bytes`` (``consume+Event``), and ``relay``: every value read and sent on to a topic
  of its own with the worker's producer settings, all acknowledged (the I/O of forwarding every
  event, without logic, state or checkpoints). Each repetition produces its own topics (a new
  prefix), so the worker starts without state. The ratio is the median over repetitions of
  the worker's events/s over ``consume+json``'s.
* ``latency`` -- the API (``python -m clickstream api``), the worker and the reactor
  (``python -m clickstream reactor``, ``CLICKSTREAM_WEBHOOK_URL`` pointing at a receiver in this
  script) with a rules file holding one session rule (``event_count`` at least 3). ``--latency-visitors``
  visitors each POST 3 ``/v1/track`` events 1 s apart, at ``--latency-rate`` events/s overall (open
  loop); each visitor's third event fires one reaction. Latency = receiver's arrival time minus the
  time the third event's POST left (same process, ``perf_counter``). Baselines in the same run:
  the API's own answer time for those POSTs, and one Kafka hop on the same broker (an aiokafka
  producer's ``send`` to a consumer's ``getmany`` on a one-partition topic, ``--hop-samples`` records
  at the same rate). The pipeline has two such hops (raw -> worker -> reactions -> reactor).
* ``state`` -- ``--state-visitors`` visitors with one event each go through a fresh worker; its
  VmRSS is sampled against ``events_out`` while it runs and VmHWM (peak RSS) read at the end. The
  figure for 1 million visitors is extrapolated linearly from the slope when fewer were run, and
  printed as such.
* ``profile`` -- in-process, no I/O, with the worker's GC thresholds: ``Event.from_bytes``,
  ``PartitionProcessor.process`` and the serialization ``app.checkpoint`` does (``Event.to_bytes``
  of each output, ``state_store.encode`` (pydantic_core's ``to_json``) of each changed visitor's
  state, ``PartitionProcessor.checkpoint``) timed per event on ``--profile-events`` of the same
  events, with a cProfile of ``process``; the state per visitor from ``tracemalloc``.
  ``--py-spy DIR`` also runs one extra (unreported) throughput repetition under ``py-spy record``
  and prints where the worker's samples fall.

The machine may be shared: each timed line gives the load average and the CPU used by processes
other than this benchmark's (in cores). Run by hand from the project root; never in the test suite:

    PYTHONPATH=. .venv/bin/python bench/processor.py
    PYTHONPATH=. .venv/bin/python bench/processor.py --only throughput --events 200000 --repeat 3
    PYTHONPATH=. .venv/bin/python bench/processor.py --only state --state-visitors 1000000
    PYTHONPATH=. .venv/bin/python bench/processor.py --only profile --py-spy /tmp/procspy
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import os
import platform
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

# bench/benchkit.py, beside this file
from benchkit import CpuMeter, kafka_hop, load, pct, process_tree, reaction_receiver, vm_status, with_tansu_storage

# As a script this file's folder comes first on sys.path, where bench/query.py and bench/sink.py
# would shadow the ``query`` and ``sink`` packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import aiohttp  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from clickstream.events import Event
from clickstream.garbage import collect_less
from clickstream.kafka import create_topics, producer_config
from clickstream.settings import Settings
from clickstream.stack.components import stack_components
from clickstream.stack.probes import free_port, free_port_pair, http_ok
from clickstream.stack.servers import GRPC_OFFSET
from clickstream.stack.supervisor import StackError, Supervisor, tail
from clickstream.topics import Topics
from stream_processor.app import processing_config
from stream_processor.partition import PartitionProcessor
from stream_processor.rules import parse_rules
from stream_processor.sessions import session_id_for
from stream_processor.state_store import encode

try:
    import orjson

    loads, LOADS_NAME = orjson.loads, "orjson"
except ImportError:
    loads, LOADS_NAME = json.loads, "json"

ROOT = f"{Path(__file__).resolve().parents[1]}/"  # the checkout, cut from py-spy's paths
WRITE_KEY = "bench-write-key"
SESSION_RULE = """rules:
  - name: third_event
    kind: session
    field: event_count
    at_least: 3
"""

# --- events ------------------------------------------------------------------------------------

PAGES = ["/", "/pricing", "/features", "/blog", "/blog/launch", "/docs", "/docs/install", "/signup", "/login",
         "/checkout", "/cart", "/products/alpha", "/products/beta", "/about", "/contact"]
REFERRERS = [(None, None), (None, None), ("https://www.google.com/", "www.google.com"),
             ("https://news.ycombinator.com/", "news.ycombinator.com"), ("https://twitter.com/", "twitter.com")]
UTM = [None, None, None, ("newsletter", "email", "spring"), ("google", "cpc", "brand")]
AGENTS = [("Chrome", "Windows", "desktop"), ("Safari", "macOS", "desktop"), ("Mobile Safari", "iOS", "mobile"),
          ("Chrome Mobile", "Android", "mobile"), ("Firefox", "Linux", "desktop")]
TRACKS = ["Product Viewed", "Product Added", "Signup Started", "Order Completed", "Element Clicked"]


def templates(rng: random.Random, count: int = 500) -> list[dict]:
    """Event bodies as the API writes them to ``clickstream.raw`` (``Event`` as JSON), without the
    per-event fields (ids and times), which :func:`make_stream` fills in."""
    out = []
    for i in range(count):
        path = rng.choice(PAGES)
        utm = rng.choice(UTM)
        query = f"utm_source={utm[0]}&utm_medium={utm[1]}&utm_campaign={utm[2]}" if utm else None
        referrer, referrer_host = rng.choice(REFERRERS)
        browser, os_name, device = rng.choice(AGENTS)
        page = rng.random() < 0.7
        name = None if page else rng.choice(TRACKS)
        if page:
            props = {}
        elif name == "Order Completed":
            props = {"order_id": f"o-{i}", "revenue": round(rng.uniform(10, 500), 2), "currency": "EUR"}
        else:
            props = {"product_id": f"sku-{rng.randrange(500)}"}
        event = Event(
            event_id="x", type="page" if page else "track", event=name, anonymous_id="x",
            timestamp=datetime.now(timezone.utc), received_at=datetime.now(timezone.utc), source="web",
            url=f"https://shop.example{path}" + (f"?{query}" if query else ""), host="shop.example", path=path,
            query=query, referrer=referrer, referrer_host=referrer_host, browser=browser, os=os_name,
            device_type=device, ip=f"203.0.{rng.randrange(256)}.0",
            utm_source=utm[0] if utm else None, utm_medium=utm[1] if utm else None,
            utm_campaign=utm[2] if utm else None, properties=props,
            context={"library": {"name": "analytics.js", "version": "4.1.0"}},
        )
        out.append(event.model_dump(mode="json"))
    return out


@dataclass
class Stream:
    values: list[tuple[bytes, bytes]]  # (key, value) in delivery order
    visitors: int


def make_stream(n: int, visitors: int, span: timedelta, seed: int, *, one_each: bool = False) -> Stream:
    """``n`` events of ``visitors`` visitors (one session of 1-7 events, 5-90 s apart, each;
    ``one_each``: one event per visitor), event times over the ``span`` before now, in time order."""
    rng = random.Random(seed)
    bodies = templates(rng)
    now = datetime.now(timezone.utc).timestamp()
    start = now - span.total_seconds()
    timeline: list[tuple[float, int]] = []
    if one_each:
        timeline = [(start + span.total_seconds() * i / n, i) for i in range(n)]
    else:
        per_visitor = max(1, round(n / visitors))
        v = 0
        while len(timeline) < n:
            t = rng.uniform(start, now - 600)
            for _ in range(min(n - len(timeline), rng.randint(1, 2 * per_visitor - 1))):
                timeline.append((t, v))
                t += rng.uniform(5, 90)
            v += 1
        timeline.sort()
    values = []
    for i, (t, v) in enumerate(timeline):
        body = dict(rng.choice(bodies))
        at = datetime.fromtimestamp(t, tz=timezone.utc)
        visitor = f"anon-{seed}-{v:07d}"
        body.update(event_id=str(uuid.UUID(int=rng.getrandbits(128))), anonymous_id=visitor,
                    timestamp=at.isoformat().replace("+00:00", "Z"),
                    received_at=(at + timedelta(milliseconds=40)).isoformat().replace("+00:00", "Z"))
        values.append((visitor.encode(), json.dumps(body, separators=(",", ":")).encode()))
    # The values are what the API writes: they must decode as it does.
    for _key, value in values[:: max(1, n // 50)]:
        Event.from_bytes(value)
    return Stream(values, len({k for k, _ in values}))


async def produce(settings: Settings, topic: str, stream: Stream, batch_kb: int) -> dict[int, int]:
    """Every record to ``topic`` (keyed by device, the services' producer settings); returns the ends."""
    producer = AIOKafkaProducer(**{**producer_config(settings), "max_batch_size": batch_kb * 1024,
                                   "max_request_size": max(1048576, batch_kb * 1024 * 2)})
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for first in range(0, len(stream.values), 10000):
            futures = [await producer.send(topic, key=k, value=v) for k, v in stream.values[first:first + 10000]]
            for future in futures:
                meta = await future
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends


async def consume_all(settings: Settings, topic: str, ends: dict[int, int], decode=None,
                      on_batch=None) -> tuple[int, float]:
    """Read ``topic`` from the start to ``ends`` with a plain consumer, ``decode`` on every value and
    ``on_batch`` (a coroutine function) awaited with every fetch's records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count, start = 0, time.perf_counter()
        positions = {p: 0 for p in ends}
        while any(positions[p] < ends[p] for p in ends):
            batch = await consumer.getmany(timeout_ms=500)
            if on_batch is not None:
                await on_batch(batch)
            for tp, records in batch.items():
                if decode is not None:
                    for record in records:
                        decode(record.value)
                count += len(records)
                if records:
                    positions[tp.partition] = records[-1].offset + 1
        return count, time.perf_counter() - start
    finally:
        await consumer.stop()


async def relay_all(settings: Settings, topic: str, ends: dict[int, int]) -> tuple[int, float]:
    """Read ``topic`` to ``ends`` and send every value on to a topic of its own, to the same partition
    number, with the worker's producer settings (acknowledged by all, 512 KB batches, 5 ms linger):
    what forwarding every event costs with no logic, no state and no checkpoints."""
    out = f"{topic}.relay"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(out, len(ends), 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**{**producer_config(settings), "max_batch_size": 512 * 1024,
                                   "max_request_size": 1024 * 1024, "linger_ms": 5})

    async def forward(batch) -> None:
        sends = [await producer.send(out, record.value, key=record.key, partition=tp.partition)
                 for tp, records in batch.items() for record in records]
        await asyncio.gather(*sends)

    await producer.start()
    try:
        return await consume_all(settings, topic, ends, on_batch=forward)
    finally:
        await producer.stop()


# --- the services ------------------------------------------------------------------------------

def service_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    env.update(CLICKSTREAM_DEMO_WRITE_KEY=WRITE_KEY, PYTHONUNBUFFERED="1")
    return env


def spawn(service: str, settings: Settings, log: Path, wrapper: list[str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([*(wrapper or []), sys.executable, "-m", "clickstream", service],
                                env=service_env(settings), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.args[0].endswith("py-spy") and process.poll() is None:
        # py-spy writes its profile on SIGINT; the worker it started is then stopped by its pid.
        worker = python_pid(process)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        if worker != process.pid:
            try:
                os.kill(worker, signal.SIGTERM)
            except ProcessLookupError:
                pass
    if process.poll() is None:
        process.terminate()  # only the processes this script started, by their handle
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def python_pid(process: subprocess.Popen) -> int:
    """The worker's pid: the process itself, or its child when it runs under py-spy."""
    for _ in range(100):
        kids = process_tree(process.pid) - {process.pid}
        if not kids and "py-spy" not in " ".join(process.args[:1]):
            return process.pid
        if kids:
            return min(kids)
        time.sleep(0.05)
    return process.pid


async def wait_health(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(http_ok, url, 0.5):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{tail(log, 40)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout:.0f} s:\n{tail(log, 40)}")
        await asyncio.sleep(0.1)


async def health(session: aiohttp.ClientSession, url: str) -> dict:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            return await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return {}


def fresh(settings: Settings, name: str, **update) -> Settings:
    return settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{name}.",
                                       "processor_port": free_port(), **update})


# --- throughput --------------------------------------------------------------------------------

@dataclass
class WorkerRun:
    events: int
    startup: float  # spawn -> /health answers
    first_out: float  # spawn -> first events_out
    seconds: float  # first events_out -> events_out == events
    committed_after: float | None  # first events_out -> committed offsets at the ends
    hwm: int
    rss_samples: list[tuple[int, int]]  # (events_out, VmRSS)
    cpu: CpuMeter
    stats: dict

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def run_worker(settings: Settings, ends: dict[int, int], log: Path, wrapper: list[str] | None = None,
                     timeout: float = 3600) -> WorkerRun:
    topic = Topics.from_settings(settings).raw
    total = sum(ends.values())
    url = settings.url(settings.processor_port) + "/health"
    watcher = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                               group_id=Topics.from_settings(settings).group("processor"), enable_auto_commit=False)
    await watcher.start()
    spawned = time.perf_counter()
    process = spawn("processor", settings, log, wrapper)
    pid = python_pid(process)
    samples: list[tuple[int, int]] = []
    try:
        await wait_health(url, process, log)
        ready = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            first = None
            with CpuMeter(pid) as cpu:
                deadline = time.monotonic() + timeout
                while True:
                    body = await health(session, url)
                    out = body.get("events_out", 0)
                    now = time.perf_counter()
                    if first is None and out > 0:
                        first = now
                    samples.append((out, vm_status(pid, "VmRSS")))
                    if out >= total:
                        break
                    if process.poll() is not None:
                        raise RuntimeError(f"the worker exited with {process.returncode}:\n{tail(log, 40)}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the worker put out {out} of {total} events in {timeout:.0f} s")
                    await asyncio.sleep(0.1)
                done = now
            committed_after = None
            deadline = time.monotonic() + 30
            tps = [TopicPartition(topic, p) for p in ends]
            while time.monotonic() < deadline:
                offsets = {tp.partition: (await watcher.committed(tp)) or 0 for tp in tps}
                if all(offsets[p] >= end for p, end in ends.items()):
                    committed_after = time.perf_counter() - first
                    break
                await asyncio.sleep(0.25)
            stats = await health(session, url)
        hwm = vm_status(pid, "VmHWM")
    finally:
        stop(process)
        await watcher.stop()
    return WorkerRun(total, ready - spawned, first - spawned, done - first, committed_after, hwm, samples, cpu,
                     stats)


BASELINES = {"consume": None, f"consume+{LOADS_NAME}": loads, "consume+Event": Event.from_bytes,
             "relay": "relay"}


async def throughput(args, settings: Settings, tmp: Path) -> dict:
    reps = []
    print(f"\n== throughput: {args.events:,} events, {args.visitors:,} visitors, {args.repeat} repetitions, "
          f"{args.batch_kb} KB producer batches ==", flush=True)
    print(f"{'rep':>3} {'target':<16} {'events/s':>9} {'seconds':>8} {'other CPU':>9}  notes", flush=True)
    extra = 1 if args.py_spy else 0
    for r in range(args.repeat + extra):
        profiled = r == args.repeat
        s = fresh(settings, f"t{r}")
        await create_topics(s)
        stream = make_stream(args.events, args.visitors, timedelta(minutes=args.span_minutes), seed=100 + r)
        t0 = time.perf_counter()
        ends = await produce(s, Topics.from_settings(s).raw, stream, args.batch_kb)
        size = sum(len(v) for _, v in stream.values) / len(stream.values)
        print(f"{r + 1:>3} produced {sum(ends.values()):,} records ({size:.0f} bytes on average, "
              f"{stream.visitors:,} visitors) in {time.perf_counter() - t0:.1f} s", flush=True)
        del stream
        rep: dict = {}
        names = ["worker", *BASELINES]
        order = names[r % len(names):] + names[:r % len(names)] if not profiled else ["worker"]
        for name in order:
            if name == "worker":
                wrapper = None
                if profiled:
                    args.py_spy.mkdir(parents=True, exist_ok=True)
                    wrapper = [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                               "--format", "raw", "--rate", "50", "-o", str(args.py_spy / "worker.txt"), "--"]
                run = await run_worker(s, ends, tmp / f"worker-t{r}.log", wrapper)
                rep["worker"] = run
                print(f"{r + 1:>3} {'worker' + (' (py-spy)' if profiled else ''):<16} {run.rate:>9,.0f} "
                      f"{run.seconds:>8.1f} {run.cpu.others:>9.2f}  worker used {run.cpu.worker:.2f} cores; "
                      f"health after {run.startup:.1f} s, first output after {run.first_out:.1f} s; committed "
                      f"at the ends {'%.1f s' % run.committed_after if run.committed_after else 'not within 30 s'}"
                      f" after first output; VmHWM {run.hwm / 2**20:.0f} MiB; sessions_out "
                      f"{run.stats.get('sessions_out')}, late_events {run.stats.get('late_events')}, checkpoints "
                      f"{run.stats.get('checkpoints')} (processing waited for one {run.stats.get('checkpoint_waits', 0)} "
                      f"times, {run.stats.get('checkpoint_wait_s', 0):.1f} s); {load()}",
                      flush=True)
            else:
                with CpuMeter() as cpu:
                    if name == "relay":
                        count, seconds = await relay_all(s, Topics.from_settings(s).raw, ends)
                    else:
                        count, seconds = await consume_all(s, Topics.from_settings(s).raw, ends, BASELINES[name])
                rep[name] = (count / seconds, seconds, cpu)
                print(f"{r + 1:>3} {name:<16} {count / seconds:>9,.0f} {seconds:>8.1f} {cpu.others:>9.2f}  "
                      f"{count:,} records; {load()}", flush=True)
        if profiled:
            print_py_spy(args.py_spy / "worker.txt")
        else:
            reps.append(rep)
    if not reps:
        return {}
    base = f"consume+{LOADS_NAME}"
    print(f"\nmedians of {len(reps)} repetitions:")
    print(f"{'target':<16} {'events/s':>9} {'seconds':>8} {'other CPU':>9} {'vs ' + base:>14}")
    result = {}
    for name in ["worker", *BASELINES]:
        rates = [rep[name].rate if name == "worker" else rep[name][0] for rep in reps]
        secs = [rep[name].seconds if name == "worker" else rep[name][1] for rep in reps]
        others = [(rep[name].cpu if name == "worker" else rep[name][2]).others for rep in reps]
        ratio = statistics.median(a / rep[base][0] for a, rep in zip(rates, reps))
        result[name] = (statistics.median(rates), ratio)
        print(f"{name:<16} {statistics.median(rates):>9,.0f} {statistics.median(secs):>8.1f} "
              f"{statistics.median(others):>9.2f} {ratio:>14.3f}")
    rate, ratio = result["worker"]
    print(f"goal: >= 20,000 events/s per worker -> {rate:,.0f}: {'MET' if rate >= 20000 else 'NOT MET'}")
    print(f"goal: >= 8% of consume+decode -> {ratio:.1%} of consume+{LOADS_NAME}, "
          f"{statistics.median(rep['worker'].rate / rep['consume+Event'][0] for rep in reps):.1%} of "
          f"consume+Event: {'MET' if ratio >= 0.08 else 'NOT MET'}")
    hwm = statistics.median(rep["worker"].hwm for rep in reps)
    print(f"worker VmHWM after {args.events:,} events of ~{args.visitors:,} visitors: {hwm / 2**20:.0f} MiB (median)")
    return result


# --- latency -----------------------------------------------------------------------------------

async def latency(args, settings: Settings, tmp: Path) -> None:
    rules = tmp / "rules.yaml"
    rules.write_text(SESSION_RULE)
    hook_port = free_port()
    s = fresh(settings, "lat", rules_file=rules, webhook_url=f"http://127.0.0.1:{hook_port}/hook",
              api_port=free_port(), reactor_port=free_port())
    await create_topics(s)
    runner, arrivals = await reaction_receiver(hook_port, time.perf_counter)
    procs = []
    try:
        for name, port, path in (("api", s.api_port, "/healthz"), ("processor", s.processor_port, "/health"),
                                 ("reactor", s.reactor_port, "/health")):
            procs.append(spawn(name, s, tmp / f"{name}-lat.log"))
            await wait_health(s.url(port) + path, procs[-1], tmp / f"{name}-lat.log")
        print(f"\n== latency: {args.latency_visitors} visitors x 3 events at {args.latency_rate:g} events/s "
              f"through the API, session rule event_count >= 3; {load()} ==", flush=True)
        url = s.url(s.api_port) + "/v1/track"
        auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
        m, gap = args.latency_visitors, 1.0
        schedule = sorted((v * 3 / args.latency_rate + j * gap, v, j) for v in range(m) for j in range(3))
        posted: dict[str, float] = {}
        answered: list[float] = []
        failures = Counter()
        subjects = {session_id_for(f"lat-visitor-{v}", f"lat-{v}-0"): v for v in range(m)}
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector, headers=auth) as session:
            async def post(v: int, j: int) -> None:
                body = {"anonymousId": f"lat-visitor-{v}", "messageId": f"lat-{v}-{j}", "event": "Step",
                        "properties": {"step": j}, "context": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64) "
                                                                            "Gecko/20100101 Firefox/125.0"}}
                t = time.perf_counter()
                if j == 2:
                    posted[session_id_for(f"lat-visitor-{v}", f"lat-{v}-0")] = t
                try:
                    async with session.post(url, json=body) as response:
                        await response.read()
                        if response.status != 200:
                            failures[response.status] += 1
                except aiohttp.ClientError as exc:
                    failures[type(exc).__name__] += 1
                answered.append(time.perf_counter() - t)

            with CpuMeter() as cpu:
                tasks = []
                start = time.perf_counter()
                for at, v, j in schedule:
                    await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                    tasks.append(asyncio.create_task(post(v, j)))
                await asyncio.gather(*tasks)
                deadline = time.monotonic() + 60
                while len([k for k in arrivals if k in subjects]) < m and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
        latencies = [arrivals[k] - posted[k] for k in subjects if k in arrivals and k in posted]
        print(f"sent {len(schedule)} events in {schedule[-1][0]:.1f} s; API failures {dict(failures) or 'none'}; "
              f"reactions received {len([k for k in arrivals if k in subjects])} of {m}; "
              f"other CPU {cpu.others:.2f} cores; {load()}", flush=True)
    finally:
        for p in reversed(procs):
            stop(p)
        await runner.cleanup()
    hop = await kafka_hop(s, args.hop_samples, args.latency_rate)
    print(f"{'measure':<44} {'p50':>8} {'p99':>8} {'max':>8} {'n':>5}")
    rows = [("POST of the 3rd event -> webhook (pipeline)", latencies),
            ("API answer (every POST)", answered),
            ("one Kafka hop (send -> getmany), baseline", hop)]
    for name, values in rows:
        if values:
            print(f"{name:<44} {pct(values, 50) * 1000:>6.0f}ms {pct(values, 99) * 1000:>6.0f}ms "
                  f"{max(values) * 1000:>6.0f}ms {len(values):>5}")
    if latencies and hop:
        floor = pct(answered, 50) + 2 * pct(hop, 50)
        print(f"pipeline p50 / (API p50 + 2 hops p50 = {floor * 1000:.0f} ms): {pct(latencies, 50) / floor:.1f}x")
        p99 = pct(latencies, 99)
        print(f"goal: p99 under 2 s -> {p99:.2f} s: {'MET' if p99 < 2 else 'NOT MET'}"
              + ("" if len(latencies) == m else f" (only {len(latencies)} of {m} reactions arrived)"))


# --- state -------------------------------------------------------------------------------------

async def state(args, settings: Settings, tmp: Path) -> None:
    n = args.state_visitors
    s = fresh(settings, "st")
    await create_topics(s)
    print(f"\n== state: {n:,} visitors, one event each, over {args.span_minutes:g} minutes; {load()} ==", flush=True)
    t0 = time.perf_counter()
    stream = make_stream(n, n, timedelta(minutes=args.span_minutes), seed=7, one_each=True)
    ends = await produce(s, Topics.from_settings(s).raw, stream, args.batch_kb)
    del stream
    print(f"produced {sum(ends.values()):,} records in {time.perf_counter() - t0:.1f} s", flush=True)
    run = await run_worker(s, ends, tmp / "worker-state.log")
    # Slope of VmRSS against events out, over the second half of the run (past start-up and warm-up).
    half = [(e, m) for e, m in run.rss_samples if e >= n / 2]
    (e0, m0), (e1, m1) = half[0], half[-1]
    slope = (m1 - m0) / max(1, e1 - e0)
    base = run.rss_samples[0][1]
    print(f"worker: {run.rate:,.0f} events/s, VmHWM {run.hwm / 2**20:,.0f} MiB after {n:,} visitors "
          f"(VmRSS before the first output {base / 2**20:.0f} MiB, {(run.hwm - base) / n:,.0f} bytes per visitor; "
          f"slope over the second half {slope:,.0f} bytes per visitor); late_events {run.stats.get('late_events')}; "
          f"other CPU {run.cpu.others:.2f}; {load()}")
    if n >= 1_000_000:
        print(f"goal: VmHWM under 1 GB for 1 million visitors -> {run.hwm / 1e9:.2f} GB: "
              f"{'MET' if run.hwm < 1e9 else 'NOT MET'}")
    else:
        estimate = run.hwm + slope * (1_000_000 - n)
        print(f"EXTRAPOLATED (linear, from {n:,} visitors): VmHWM for 1 million visitors ~ {estimate / 1e9:.2f} GB; "
              f"goal under 1 GB: {'MET' if estimate < 1e9 else 'NOT MET'} (extrapolated)")


# --- in-process profile --------------------------------------------------------------------------

def profile(args) -> None:
    n = args.profile_events
    collect_less(freeze=False)  # as the worker runs
    stream = make_stream(n, max(1, n // 4), timedelta(minutes=args.span_minutes), seed=5)
    values = [v for _, v in stream.values]
    config = processing_config(Settings(_env_file=None))
    ruleset = parse_rules(SESSION_RULE)
    print(f"\n== profile in-process: {n:,} events of {stream.visitors:,} visitors, one partition, "
          f"session rule in force; {load()} ==", flush=True)

    def fresh_processor():
        return PartitionProcessor(0, config, {}, lambda: ruleset)

    now = datetime.now(timezone.utc)
    decoded = [Event.from_bytes(v) for v in values]

    def run_process(proc):
        outs = []
        wall = time.time()
        for i, e in enumerate(decoded):
            outs.append(proc.process(e, "raw", i, now=now, wall=wall))
        return outs

    def timed(fn, setup=lambda: None, reps=3) -> float:
        best = float("inf")
        for _ in range(reps):
            arg = setup()
            t = time.perf_counter()
            fn(arg)
            best = min(best, time.perf_counter() - t)
        return best / n * 1e6

    proc = fresh_processor()
    outs = run_process(proc)
    visitors = proc.visitors
    events_out = [e for o in outs for _, e in o.events]
    dirty = [k for o in outs for k in o.dirty]
    steps = {
        "Event.from_bytes": timed(lambda _: [Event.from_bytes(v) for v in values]),
        f"{LOADS_NAME}.loads (baseline decode)": timed(lambda _: [loads(v) for v in values]),
        "PartitionProcessor.process": timed(run_process, fresh_processor),
        "Event.to_bytes of the outputs": timed(lambda _: [e.to_bytes() for e in events_out]),
        "encode (to_json) of changed visitor states": timed(
            lambda _: [encode(visitors[k]) for k in dirty if k in visitors]),
        "PartitionProcessor.checkpoint (every 5,000)": timed(
            lambda _: [proc.checkpoint() for _ in range(max(1, n // 5000))]),
    }
    total = sum(v for k, v in steps.items() if "baseline" not in k)
    print(f"{'step':<44} {'us/event':>9} {'events/s on one core':>21}")
    for step, us in steps.items():
        print(f"{step:<44} {us:>9.1f} {1e6 / us:>21,.0f}")
    print(f"{'sum (the worker before Kafka and Faust)':<44} {total:>9.1f} {1e6 / total:>21,.0f}")

    profiler = cProfile.Profile()
    p = fresh_processor()
    profiler.enable()
    run_process(p)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    print("\ncProfile of PartitionProcessor.process, by own time:")
    print("\n".join(line for line in text.getvalue().splitlines()[4:] if line.strip()))

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    p = fresh_processor()
    run_process(p)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per = (after - before) / len(p.visitors)
    print(f"\nstate held by PartitionProcessor (tracemalloc): {(after - before) / 2**20:.1f} MiB for "
          f"{len(p.visitors):,} visitors ({n / len(p.visitors):.1f} events each, sessions open and closed): "
          f"{per:,.0f} bytes per visitor")
    sample = next(iter(p.visitors.values()))
    print(f"one visitor's state as JSON ({len(json.dumps(sample))} bytes): {json.dumps(sample)[:400]}...")


def print_py_spy(path: Path, top: int = 25) -> None:
    """Own and total share of the worker's samples per function, from py-spy's raw (collapsed) output."""
    own, total, samples = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [f.rsplit(" (", 1) for f in stack.split(";")]
        names = [f"{fn} ({loc.rsplit(':', 1)[0].split('site-packages/')[-1].split(ROOT)[-1]})"
                 for fn, loc in (f if len(f) == 2 else (f[0], "?)") for f in frames)]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    print(f"\npy-spy of the worker: {samples:,} samples (50/s, active threads)")
    print(f"{'own %':>6} {'total %':>7}  function")
    for name, n in own.most_common(top):
        print(f"{100 * n / samples:>6.1f} {100 * total[name] / samples:>7.1f}  {name}")
    print("\nby total (inclusive) share, the project's and Faust's frames:")
    shown = 0
    for name, n in total.most_common():
        if any(k in name for k in ("stream_processor/", "clickstream/", "faust/", "aiokafka/", "pydantic")):
            print(f"{100 * n / samples:>6.1f}%  {name}")
            shown += 1
            if shown >= top:
                break


# --- main --------------------------------------------------------------------------------------

async def measure(args, settings: Settings, tmp: Path) -> None:
    if "throughput" in args.only:
        await throughput(args, settings, tmp)
    if "latency" in args.only:
        await latency(args, settings, tmp)
    if "state" in args.only:
        await state(args, settings, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=lambda t: t.split(","), default=["profile", "throughput", "latency", "state"],
                        help="comma-separated: profile, throughput, latency, state")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--visitors", type=int, default=50_000, help="visitors of the throughput stream")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--span-minutes", type=float, default=120, help="event times spread over this much of the past")
    parser.add_argument("--batch-kb", type=int, default=512, help="producer batch size for clickstream.raw")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-visitors", type=int, default=300)
    parser.add_argument("--latency-rate", type=float, default=60, help="events/s sent to the API")
    parser.add_argument("--hop-samples", type=int, default=300)
    parser.add_argument("--state-visitors", type=int, default=300_000)
    parser.add_argument("--profile-events", type=int, default=40_000)
    parser.add_argument("--py-spy", type=Path, help="run one extra throughput repetition under py-spy, output here")
    parser.add_argument("--tansu-storage", help="Tansu's --storage-engine instead of its S3 log, e.g. memory://")
    parser.add_argument("--keep-logs", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {LOADS_NAME}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {load()}", flush=True)
    if "profile" in args.only:
        profile(args)
    if set(args.only) - {"profile"}:
        with tempfile.TemporaryDirectory(prefix="bench-proc-") as tmp:
            settings = Settings(
                _env_file=None, broker_port=free_port(), s3_port=free_port_pair(GRPC_OFFSET), state_dir=Path(tmp),
                topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", topic_partitions=args.partitions,
                demo_write_key=WRITE_KEY,
            )
            components = with_tansu_storage(
                [c for c in stack_components(settings) if c.name in ("s3", "broker")], args.tansu_storage)
            supervisor = Supervisor(settings, components)
            try:
                supervisor.start()
                print(f"SeaweedFS :{settings.s3_port}, Tansu {settings.bootstrap_servers} "
                      f"(log on {args.tansu_storage or 'S3'})", flush=True)
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
    print(f"\ntotal time {time.perf_counter() - started:.0f} s; {load()}")


if __name__ == "__main__":
    main()
