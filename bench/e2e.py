"""Benchmark: the whole local stack, end to end: the highest event rate it sustains and its latencies.

Every run starts the stack as a user does, ``python -m clickstream up --detach`` in a fresh
temporary working directory (state in its ``.clickstream``), every port a free loopback port and
every setting a ``CLICKSTREAM_*`` variable: SeaweedFS, Tansu (log on S3), the API, the processor,
the reactor, the sink and the dashboard. ``PYTHONPATH`` is this checkout, so the services run its
code. Then, for ``--duration`` seconds:

* **traffic** -- ``loadgen`` (``plan_run`` with ``--seed``, ``send_deliveries``) sends realistic
  visitors at ``--rate`` events/s through the HTTP API, as ``clickstream loadgen`` does (batches
  and single calls, 2% invalid, 2% repeated, 5% late), with at most ``--concurrency`` requests in
  flight. The HTTP client is aiohttp behind the slice of ``httpx.AsyncClient`` the sender uses
  (httpx costs about ten times the client CPU per request, see BENCHMARKS.md; on 2 cores the
  load generator would otherwise take the stack's CPU). Rate asked = ``--rate``; planned = calls
  in the plan / duration (a few more: visits are finished, repeats added); acknowledged = calls
  of the requests answered 200/400 (final answers) / seconds from the start until the last answer.
* **markers** -- a separate source (write key ``e2e-marker``) sends, every ``--marker-every``
  seconds, a new visitor's 3 ``/v1/track`` events 0.5 s apart, with known message ids.
* **ingest latency** -- p50/p99 of ``answered - sent`` of every loadgen request attempt answered
  2xx (``SendReport.attempts``): batches and single calls together.
* **event-to-lake** -- for each marker event, from its POST leaving to the moment a poller in this
  script (``--lake-poll`` s, 1 s by default, adds up to that much) lists a new Parquet object of
  the ``events`` table (its current hour partition) and finds the event's id in it (the poller's
  listings are SeaweedFS work, counted in the s3 component's CPU). Also printed: the same from
  the object's S3 Last-Modified time as SeaweedFS reports it (written, not yet seen).
  An object listed is queryable: the query layer's views read every object under the table.
  The sink's ``CLICKSTREAM_FLUSH_INTERVAL_S`` (``--flush-interval``, 5 s) dominates it.
* **event-to-reaction** -- the rules file holds the default page-view threshold rule (as in force
  without a file) and a session rule (``event_count`` at least 3) for the marker source only;
  the reactor's webhook (``CLICKSTREAM_WEBHOOK_URL``) is a receiver in this script. Latency = the
  webhook call's arrival minus the POST of the visitor's 3rd event. (A reaction's subject is the
  session id, derived from the first of the session's events the processor saw, which under load
  is not always the first sent: the receiver accepts any of the visitor's three.)
* **consumer lag** -- every ``--sample`` s, per consumer group (processor: raw; reactor: reactions;
  sink: events, invalid, sessions, metrics, reactions): end offset minus committed offset, summed
  over partitions. Committed offsets come from a consumer of each group that joins nothing
  (``consumer.committed``). End offsets are the high watermarks of fetch responses (a consumer
  without a group, paused, that seeks each partition to the last known end and fetches once per
  sample): Tansu's ListOffsets answer (``end_offsets``) lags the real end, below the groups'
  committed offsets, and cannot be used.
* **CPU and memory** -- per component process (``clickstream status --json`` gives the pids; none
  has children): user+sys from ``/proc/<pid>/stat`` over the traffic, in cores, and VmHWM (peak
  RSS since start) from ``/proc/<pid>/status`` at the end. Also this script's own CPU (load
  generator, markers, monitors) and "other": the machine's busy time minus the stack's and this
  script's, the load of processes outside the benchmark, with the busiest of them named.

**Keeps up** (the criterion): (1) the API: no request failed, over the middle half of the
traffic it acknowledged at least 95% of the calls planned for that half, and its own lag did not
grow: the delay of each request's final answer behind its due time (the load generator sends on
schedule while fewer than ``--concurrency`` requests are in flight), mean over requests due in
the last quarter minus mean over the second quarter, is within the allowance below; (2) for
every consumer group, its lag did not grow: the mean lag over the last
quarter of the traffic minus the mean over the second quarter, in seconds of that group's input
(lag / its topics' growth per second), is at most 1 s + 2% of half the duration (1.6 s for 60 s,
4 s for 300 s; the two means are half the duration apart, so at 300 s a stage whose capacity is
short of its input by more than about 2.7% fails), or at most 10
records for a group with almost no input (the reactor); and (3) after the
traffic stops every group's lag returns to 0 within ``--drain`` s (60). A stage that keeps up has
a bounded lag (the sink's is a saw-tooth of up to one flush interval of input); one that does
not grows it for as long as the traffic lasts.

**Search**: probe runs of ``--probe-duration`` s (60) at each of ``--rates`` in increasing order
until one does not keep up; optionally (``--refine``) one probe halfway between the last rate
that kept up and the first that did not; then ``--repeat`` confirmation runs of ``--duration`` s
(300) at the highest rate that kept up; if one of them falls behind, the confirmation restarts
once at the next lower probe rate that kept up (``--no-step-down``: not). ``--confirm-rate R``
skips the search. Figures reported are medians over the confirmation runs at the final rate.

**Baselines**, measured after each run's traffic (the stack idle, lag drained), on the same
broker: raw aiokafka produce throughput (one ``AIOKafkaProducer`` with the API's producer
settings, ``--baseline-events`` records cut from the run's own raw records, sent pipelined and
all acknowledged, to a new 4-partition topic) and one Kafka hop (``send`` -> ``getmany``,
``--hop-samples`` records at 60/s). The ratios: acknowledged events/s over the producer's, and
event-to-reaction over (ingest p50 + 2 hops), the pipeline's two hops (raw -> processor ->
reactions -> reactor).

Run by hand from the project root; never in the test suite:

    PYTHONPATH=$PWD .venv/bin/python bench/e2e.py --rates 400,800,1200,1600 --refine  # search + 3 x 5 min
    PYTHONPATH=$PWD .venv/bin/python bench/e2e.py --rates 50,100 --probe-duration 30 --repeat 0   # short
    PYTHONPATH=$PWD .venv/bin/python bench/e2e.py --confirm-rate 200 --duration 300 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchkit import (TICK, busy_ticks, kafka_hop, load, pct, process_ticks, process_tree, reaction_receiver,
                      vm_status)

# As a script this file's folder comes first on sys.path, where bench/query.py and bench/sink.py
# would shadow the ``query`` and ``sink`` packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from clickstream.kafka import producer_config  # noqa: E402
from clickstream.settings import Settings  # noqa: E402
from clickstream.stack.probes import free_port, free_port_pair  # noqa: E402
from clickstream.stack.servers import GRPC_OFFSET  # noqa: E402
from clickstream.storage import s3_filesystem  # noqa: E402
from clickstream.topics import Topics  # noqa: E402
from loadgen.plan import plan_run  # noqa: E402
from loadgen.sender import send_deliveries  # noqa: E402
from stream_processor.sessions import session_id_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_KEY = "bench-e2e-demo-key"
MARKER_KEY = "bench-e2e-marker-key"
MARKER_SOURCE = "e2e-marker"
COMPONENTS = ["api", "processor", "sink", "reactor", "dashboard", "broker", "s3"]
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def rules_yaml(page_view_threshold: int) -> str:
    return f"""rules:
  - name: page_views_threshold      # the rule in force without a rules file
    kind: threshold
    metric: page_views
    dimension: "path=*"
    at_least: {page_view_threshold}
  - name: e2e_marker_third_event    # fires on each marker visitor's 3rd event
    kind: session
    source: {MARKER_SOURCE}
    field: event_count
    at_least: 3
"""


# --- the HTTP client the load generator uses ------------------------------------------------------

class _Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status_code, self.content, self.headers = status, body, headers

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self):
        return json.loads(self.content)


class AiohttpClient:
    """The slice of ``httpx.AsyncClient`` that ``loadgen.sender.send_deliveries`` uses, over aiohttp.

    The write key goes in every request's Basic auth (the sender's ``auth`` argument is the same)."""

    def __init__(self, base_url: str, write_key: str, concurrency: int):
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        self.session = aiohttp.ClientSession(
            base_url, connector=aiohttp.TCPConnector(limit=concurrency),
            headers={"Authorization": f"Basic {token}"}, timeout=aiohttp.ClientTimeout(total=30))

    async def post(self, path: str, *, json: dict, auth=None, headers: dict | None = None) -> _Response:
        data = _dumps(json)
        try:
            async with self.session.post(path, data=data, headers={**(headers or {}),
                                                                    "Content-Type": "application/json"}) as r:
                return _Response(r.status, await r.read(), r.headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.session.close()


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- the stack, as a user runs it ------------------------------------------------------------------

ACTIVE: set[Stack] = set()  # stacks up now, stopped by main() whatever happens


class Stack:
    """``clickstream up --detach`` / ``status --json`` / ``down`` in ``workdir``, with these settings."""

    def __init__(self, workdir: Path, settings: Settings):
        self.workdir, self.settings = workdir, settings
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
        self.env.update(settings.as_env())
        path = os.environ.get("PYTHONPATH", "")
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in path.split(os.pathsep) if p]])
        self.pids: dict[str, int] = {}
        self.supervisor: int | None = None

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "clickstream", *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def up(self) -> float:
        t = time.monotonic()
        ACTIVE.add(self)
        done = self.cli("up", "--detach")
        if done.returncode != 0:
            raise RuntimeError(f"clickstream up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        status = json.loads(self.cli("status", "--json").stdout)
        self.supervisor = status["supervisor_pid"]
        self.pids = {name: c["pid"] for name, c in status["components"].items()}
        down = [name for name, c in status["components"].items() if c["state"] != "up"]
        if down:
            raise RuntimeError(f"components not up after `clickstream up`: {down}")
        return time.monotonic() - t

    def restarts(self) -> dict[str, int]:
        try:
            status = json.loads(self.cli("status", "--json", timeout=60).stdout)
        except (ValueError, subprocess.SubprocessError):
            return {}
        return {name: c["restarts"] for name, c in status["components"].items() if c["restarts"]}

    def down(self) -> None:
        self.cli("down", timeout=120)
        ACTIVE.discard(self)

    def logs(self) -> Path:
        return self.workdir / self.settings.state_dir / "logs"


# --- CPU of every process, to name the others -------------------------------------------------------

def all_ticks() -> dict[int, tuple[str, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    text = f.read()
                name = text[text.index("(") + 1:text.rindex(")")]
                rest = text.rsplit(")", 1)[1].split()
                out[int(entry)] = (name, int(rest[11]) + int(rest[12]))
            except (OSError, ValueError, IndexError):
                continue
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:90]
    except OSError:
        return "?"


@dataclass
class CpuWindow:
    """Cores used between ``start()`` and ``stop()``: per stack component, by this script, and by the rest."""

    stack: Stack
    seconds: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    bench: float = 0.0
    machine: float = 0.0
    others: float = 0.0
    top_others: list[tuple[str, float]] = field(default_factory=list)

    def start(self) -> None:
        self.t0, self.busy0, self.all0 = time.monotonic(), busy_ticks(), all_ticks()
        self.comp0 = {n: process_ticks(p) for n, p in self.stack.pids.items()}
        self.supervisor0 = process_ticks(self.stack.supervisor)
        self.bench_pids = process_tree(os.getpid())
        self.bench0 = {p: process_ticks(p) for p in self.bench_pids}

    def stop(self) -> None:
        self.seconds = max(1e-9, time.monotonic() - self.t0)
        per_s = TICK * self.seconds
        self.machine = (busy_ticks() - self.busy0) / per_s
        self.components = {n: (process_ticks(p) - self.comp0[n]) / per_s for n, p in self.stack.pids.items()}
        pids = process_tree(os.getpid()) | self.bench_pids
        self.bench = sum(process_ticks(p) - self.bench0.get(p, 0) for p in pids) / per_s
        now = all_ticks()
        ours = pids | set(self.stack.pids.values()) | {self.stack.supervisor}
        # Processes started and ended within the window are missed by name, not by ``others``.
        rest = sorted(((now[p][1] - self.all0.get(p, (None, 0))[1]) / per_s, p) for p in now if p not in ours)
        self.top_others = [(f"{now[p][0]} [{cmdline(p)}]", c) for c, p in reversed(rest[-3:]) if c >= 0.02]
        self.components["supervisor"] = (process_ticks(self.stack.supervisor) - self.supervisor0) / per_s
        self.others = max(0.0, self.machine - sum(self.components.values()) - self.bench)


# --- consumer lag -----------------------------------------------------------------------------------

def pipeline_groups(topics: Topics) -> dict[str, tuple[str, ...]]:
    """Consumer group -> the topics it reads (as the dashboard's pipeline health lists them)."""
    return {
        "processor": (topics.raw,),
        "reactor": (topics.reactions,),
        "sink": (topics.events, topics.invalid, topics.sessions, topics.metrics, topics.reactions),
    }


class LagMonitor:
    """End offsets (fetch high watermarks) and each group's committed offsets, sampled on demand."""

    def __init__(self, settings: Settings, partitions: int):
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.groups = pipeline_groups(self.topics)
        names = sorted({t for ts in self.groups.values() for t in ts})
        self.tps = [TopicPartition(t, p) for t in names for p in range(partitions)]
        self.ends = {tp: 0 for tp in self.tps}
        self.samples: list[tuple[float, dict[str, int], dict[str, int]]] = []  # (t, lag per group, end per group)

    async def start(self) -> None:
        bootstrap = self.settings.bootstrap_servers
        self.tail = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                     fetch_max_wait_ms=50, max_partition_fetch_bytes=1024,
                                     auto_offset_reset="earliest")
        await self.tail.start()
        self.tail.assign(self.tps)
        self.tail.pause(*self.tps)
        self.members = {}
        for group in self.groups:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=self.topics.group(group),
                                        enable_auto_commit=False)
            await consumer.start()
            self.members[group] = consumer

    async def stop(self) -> None:
        await self.tail.stop()
        for consumer in self.members.values():
            await consumer.stop()

    async def _ends(self) -> None:
        asked = int(time.time() * 1000)
        for tp in self.tps:
            self.tail.seek(tp, self.ends[tp])
        self.tail.resume(*self.tps)
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                await self.tail.getmany(timeout_ms=100)
                if all((self.tail.last_poll_timestamp(tp) or 0) >= asked for tp in self.tps):
                    break
        finally:
            self.tail.pause(*self.tps)
        for tp in self.tps:
            hw = self.tail.highwater(tp)
            if hw is not None:
                self.ends[tp] = max(self.ends[tp], hw)

    async def sample(self, t: float) -> tuple[dict[str, int], dict[str, int]]:
        await self._ends()
        lags, ends = {}, {}
        for group, topics in self.groups.items():
            lag = end = 0
            for tp in self.tps:
                if tp.topic in topics:
                    committed = await self.members[group].committed(tp) or 0
                    lag += max(0, self.ends[tp] - committed)
                    end += self.ends[tp]
            lags[group], ends[group] = lag, end
        self.samples.append((t, lags, ends))
        return lags, ends


def keeps_up_lag(samples, group: str, duration: float) -> tuple[bool, float, float, float]:
    """(kept up, growth in seconds of input, input records/s, max lag) for ``group`` over the traffic."""
    during = [(t, lags[group], ends[group]) for t, lags, ends in samples if 0 <= t <= duration]
    if len(during) < 4:
        return False, float("nan"), 0.0, float("nan")
    (t0, _, e0), (t1, _, e1) = during[0], during[-1]
    rate = (e1 - e0) / max(1e-9, t1 - t0)
    q2 = [lag for t, lag, _ in during if duration / 4 <= t < duration / 2]
    q4 = [lag for t, lag, _ in during if t >= 3 * duration / 4]
    if not q2 or not q4:
        return False, float("nan"), rate, float("nan")
    grown = statistics.mean(q4) - statistics.mean(q2)
    allowed = 1.0 + 0.02 * duration / 2
    # A group with almost no input (the reactor) may grow by 10 records and still keep up.
    return grown <= max(10.0, allowed * rate), grown / max(rate, 1e-9), rate, max(lag for _, lag, _ in during)


def lag_series(samples, group: str, duration: float, points: int = 6) -> str:
    """The group's lag at evenly spaced moments of the traffic, then the last sample after it."""
    during = [(t, lags[group]) for t, lags, _ in samples if t >= 0]
    if not during:
        return "-"
    marks = [duration * i / (points - 1) for i in range(points)]
    picked = [min(during, key=lambda s: abs(s[0] - m)) for m in marks]
    return " ".join(f"{t:.0f}s:{lag:,}" for t, lag in picked) + f" | end {during[-1][0]:.0f}s:{during[-1][1]:,}"


# --- the lake ----------------------------------------------------------------------------------------

class LakePoller:
    """Lists the ``events`` table's current hour partition (and the previous one, in the first 2 minutes of
    an hour) every ``interval`` s, reads
    the ``event_id`` column of each new object, and notes when each marker id first appeared."""

    def __init__(self, settings: Settings, interval: float):
        self.fs = s3_filesystem(settings)
        self.base = f"{settings.s3_bucket}/events"
        self.interval = interval
        self.seen_objects: set[str] = set()
        self.found: dict[str, float] = {}  # marker id -> monotonic time seen
        self.written: dict[str, float] = {}  # marker id -> the object's S3 mtime (epoch s)
        self.objects = 0
        self.errors = Counter()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except OSError as exc:
                self.errors[type(exc).__name__] += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def poll(self) -> None:
        now = datetime.now(timezone.utc)
        # The previous hour only in the first 2 minutes of an hour: its last objects may still come.
        for at in ((now - timedelta(hours=1), now) if now.minute < 2 else (now,)):
            selector = pafs.FileSelector(f"{self.base}/dt={at:%Y-%m-%d}/hour={at:%H}", allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.type != pafs.FileType.File or info.path in self.seen_objects:
                    continue
                ids = pq.read_table(info.path, columns=["event_id"], filesystem=self.fs).column(0).to_pylist()
                seen = time.monotonic()
                self.seen_objects.add(info.path)
                self.objects += 1
                for event_id in ids:
                    if event_id and event_id.startswith("e2e-m-") and event_id not in self.found:
                        self.found[event_id] = seen
                        if info.mtime is not None:
                            self.written[event_id] = info.mtime.timestamp()

    def stop(self) -> None:
        self._stop.set()


# --- one run ------------------------------------------------------------------------------------------

@dataclass
class Run:
    rate: float
    duration: float
    startup_s: float = 0.0
    planned_rate: float = 0.0
    acked_rate: float = 0.0
    accepted_rate: float = 0.0
    late_s: float = 0.0
    mid_acked_rate: float = 0.0
    mid_planned_rate: float = 0.0
    api_delay_growth: float = 0.0
    api_delay_p99: float = 0.0
    statuses: dict = field(default_factory=dict)
    failed: int = 0
    mismatches: int = 0
    ingest: list[float] = field(default_factory=list)
    marker_ingest: list[float] = field(default_factory=list)
    lake: list[float] = field(default_factory=list)
    lake_written: list[float] = field(default_factory=list)
    reaction: list[float] = field(default_factory=list)
    markers_sent: int = 0
    reactions_expected: int = 0
    marker_failures: dict = field(default_factory=dict)
    lag: dict = field(default_factory=dict)  # group -> {kept_up, growth_s, input_rate, max_lag, drained_s}
    cpu: dict = field(default_factory=dict)
    bench_cpu: float = 0.0
    other_cpu: float = 0.0
    top_others: list = field(default_factory=list)
    load: tuple = ()
    hwm: dict = field(default_factory=dict)
    restarts: dict = field(default_factory=dict)
    produce_rate: float = 0.0
    hop: list[float] = field(default_factory=list)
    api_ok: bool = False
    keeps_up: bool = False
    why: list[str] = field(default_factory=list)


def p(values: list[float], q: float) -> float:
    return pct(values, q) if values else float("nan")


async def one_run(args, rate: float, duration: float, label: str) -> Run:
    run = Run(rate, duration)
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    hook_port = free_port()
    (workdir / "sources.yaml").write_text(
        f"sources:\n  - name: {MARKER_SOURCE}\n    write_key: {MARKER_KEY}\n")
    base = Settings(_env_file=None)
    (workdir / "rules.yaml").write_text(rules_yaml(base.page_view_threshold))
    settings = Settings(
        _env_file=None, api_port=free_port(), dashboard_port=free_port(), processor_port=free_port(),
        reactor_port=free_port(), sink_port=free_port(), broker_port=free_port(),
        s3_port=free_port_pair(GRPC_OFFSET), demo_write_key=DEMO_KEY, sources_file=workdir / "sources.yaml",
        rules_file=workdir / "rules.yaml", webhook_url=f"http://127.0.0.1:{hook_port}/hook",
        flush_interval_s=args.flush_interval, topic_partitions=args.partitions,
    )
    runner, arrivals = await reaction_receiver(hook_port, time.monotonic)
    stack = Stack(workdir, settings)
    try:
        print(f"\n== {label}: {rate:g} events/s for {duration:g} s; starting the stack in {workdir}; {load()} ==",
              flush=True)
        run.startup_s = await asyncio.to_thread(stack.up)
        print(f"   stack up in {run.startup_s:.1f} s: " + ", ".join(f"{n} {p}" for n, p in stack.pids.items()),
              flush=True)
        await measure(args, run, stack, settings, arrivals)
        run.restarts = await asyncio.to_thread(stack.restarts)
    except Exception:
        logs = stack.logs()
        for log in sorted(logs.glob("*.log")) if logs.exists() else []:
            print(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]),
                  file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(stack.down)
        await runner.cleanup()
        if args.keep_logs and stack.logs().exists():
            target = args.keep_logs / label.replace(" ", "-")
            shutil.copytree(stack.logs(), target, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return run


async def measure(args, run: Run, stack: Stack, settings: Settings, arrivals: dict[str, float]) -> None:
    duration, rate = run.duration, run.rate
    api = settings.url(settings.api_port)
    monitor = LagMonitor(settings, settings.topic_partitions)
    await monitor.start()
    poller = LakePoller(settings, args.lake_poll)
    poll_thread = threading.Thread(target=poller.run, daemon=True)
    plan = await asyncio.to_thread(plan_run, args.seed, rate=rate, duration_s=duration,
                                   now=datetime.now(timezone.utc))
    planned = sum(len(d.calls) for d in plan.deliveries)
    run.planned_rate = planned / duration
    print(f"   planned {planned:,} calls in {len(plan.deliveries):,} requests ({run.planned_rate:,.0f}/s)",
          flush=True)

    client = AiohttpClient(api, DEMO_KEY, args.concurrency)
    marker_client = AiohttpClient(api, MARKER_KEY, 8)
    posted: dict[str, float] = {}  # marker event id -> POST sent (monotonic)
    posted_wall: dict[str, float] = {}
    third: dict[str, float] = {}  # marker visitor -> POST of its 3rd event
    # The session id comes from the first event the processor sees of the session, which is not always
    # the first sent (the API may take the 2nd before the 1st): a reaction names one of three ids.
    visitor_of: dict[str, str] = {}
    failures = Counter()
    accepted = Counter()  # marker visitor -> events the API accepted
    tag = f"{os.getpid()}-{int(time.time())}"

    async def marker_post(v: int, j: int) -> None:
        event_id = f"e2e-m-{tag}-{v}-{j}"
        body = {"anonymousId": f"e2e-visitor-{tag}-{v}", "messageId": event_id, "event": "E2E Marker",
                "properties": {"step": j}, "context": {"userAgent": FIREFOX}}
        sent, wall = time.monotonic(), time.time()
        try:
            response = await marker_client.post("/v1/track", json=body)
            status = response.status_code
        except httpx.TransportError as exc:
            status = str(exc).split(":")[0]
        if status == 200:
            posted[event_id], posted_wall[event_id] = sent, wall
            run.marker_ingest.append(time.monotonic() - sent)
            accepted[v] += 1
            if j == 2:
                third[f"e2e-visitor-{tag}-{v}"] = sent
        else:
            failures[status] += 1  # not retried: that visitor's session may never reach 3 events

    async def markers(start: float) -> None:
        tasks, v = [], 0
        while v * args.marker_every + 1.0 < duration:
            visitor = f"e2e-visitor-{tag}-{v}"
            visitor_of.update({session_id_for(visitor, f"e2e-m-{tag}-{v}-{j}"): visitor for j in range(3)})
            for j in range(3):
                at = start + v * args.marker_every + 0.5 * j
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                tasks.append(asyncio.create_task(marker_post(v, j)))
            v += 1
        await asyncio.gather(*tasks)
        # Only a visitor whose three events were all accepted fires the rule.
        for visitor in range(v):
            if accepted[visitor] < 3:
                third.pop(f"e2e-visitor-{tag}-{visitor}", None)

    stop_sampling = asyncio.Event()

    async def sampler(start: float) -> None:
        while not stop_sampling.is_set():
            t = time.monotonic()
            await monitor.sample(t - start)
            try:
                await asyncio.wait_for(stop_sampling.wait(), max(0.0, args.sample - (time.monotonic() - t)))
            except asyncio.TimeoutError:
                pass

    cpu = CpuWindow(stack)
    poll_thread.start()
    load0 = os.getloadavg()[0]
    await monitor.sample(-1.0)
    start = time.monotonic()
    cpu.start()
    sampling = asyncio.create_task(sampler(start))
    marking = asyncio.create_task(markers(start))
    done: list[tuple[float, float, int]] = []  # per request: (answered for good, due, calls), s after start
    try:
        report = await send_deliveries(
            plan.deliveries, client, DEMO_KEY, concurrency=args.concurrency,
            on_done=lambda d: done.append((time.monotonic() - start, d.send_at, len(d.calls))))
        await marking
        cpu.stop()
        load1 = os.getloadavg()[0]
        traffic_end = time.monotonic() - start
        # Drain: until every group's lag is 0 and the markers have reached the lake and the webhook.
        deadline = time.monotonic() + args.drain
        drained: dict[str, float] = {}
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            reached = {visitor_of[s]: t for s, t in arrivals.items() if s in visitor_of}
            if monitor.samples and monitor.samples[-1][0] > traffic_end:
                for group, lag in monitor.samples[-1][1].items():
                    if lag == 0 and group not in drained:
                        drained[group] = monitor.samples[-1][0] - traffic_end
            if (len(drained) == len(monitor.groups) and all(k in poller.found for k in posted)
                    and all(k in reached for k in third)):
                break
        stop_sampling.set()
        await sampling
    finally:
        stop_sampling.set()
        poller.stop()
        await client.close()
        await marker_client.close()
        await monitor.stop()
    poll_thread.join(timeout=30)
    run.hwm = {name: vm_status(pid, "VmHWM") for name, pid in stack.pids.items()}

    # Traffic.
    run.statuses = {str(k): v for k, v in sorted(report.statuses.items(), key=str)}
    run.failed, run.mismatches = len(report.failed), len(report.mismatches)
    acked = sum(len(d.calls) for d in report.acknowledged)
    run.acked_rate = acked / report.elapsed_s
    run.accepted_rate = sum(d.expected_accepted for d in report.acknowledged) / report.elapsed_s
    run.late_s = report.elapsed_s - duration
    run.ingest = [answered - sent for sent, answered, status in report.attempts
                  if isinstance(status, int) and 200 <= status < 300]
    # The API's own lag: how long after its due time each request was answered for good.
    lo, hi = duration / 4, 3 * duration / 4
    run.mid_acked_rate = sum(n for t, _, n in done if lo <= t < hi) / (hi - lo)
    run.mid_planned_rate = sum(len(d.calls) for d in plan.deliveries if lo <= d.send_at < hi) / (hi - lo)
    q2 = [t - due for t, due, _ in done if lo <= due < duration / 2]
    q4 = [t - due for t, due, _ in done if due >= hi]
    run.api_delay_growth = statistics.mean(q4) - statistics.mean(q2) if q2 and q4 else float("nan")
    run.api_delay_p99 = p([t - due for t, due, _ in done], 99)
    # Markers.
    run.markers_sent, run.reactions_expected = len(posted), len(third)
    run.marker_failures = dict(failures)
    run.lake = [poller.found[k] - posted[k] for k in posted if k in poller.found]
    run.lake_written = [poller.written[k] - posted_wall[k] for k in posted if k in poller.written]
    reached = {visitor_of[s]: t for s, t in arrivals.items() if s in visitor_of}
    run.reaction = [reached[v] - third[v] for v in third if v in reached]
    # Lag.
    for group in monitor.groups:
        kept, growth, in_rate, max_lag = keeps_up_lag(monitor.samples, group, duration)
        run.lag[group] = {"kept_up": kept, "growth_s": growth, "input_rate": in_rate, "max_lag": max_lag,
                          "drained_s": drained.get(group), "series": lag_series(monitor.samples, group, duration)}
    # CPU.
    run.cpu, run.bench_cpu, run.other_cpu = cpu.components, cpu.bench, cpu.others
    run.top_others = cpu.top_others
    run.load = (load0, load1)
    # Keeps up?
    allowed = 1.0 + 0.02 * duration / 2
    run.api_ok = (run.mid_acked_rate >= 0.95 * run.mid_planned_rate and not run.failed
                  and run.api_delay_growth <= allowed)
    if not run.api_ok:
        run.why.append(f"api: acknowledged {run.mid_acked_rate:,.0f}/s of {run.mid_planned_rate:,.0f}/s planned "
                       f"over the middle half, answers behind schedule grew by {run.api_delay_growth:+.2f} s, "
                       f"{run.failed} failed requests")
    for group, info in run.lag.items():
        if not info["kept_up"]:
            run.why.append(f"{group}: lag grew by {info['growth_s']:.1f} s of input (max {info['max_lag']:,.0f})")
        elif info["drained_s"] is None:
            run.why.append(f"{group}: lag not back to 0 within {args.drain:g} s after the traffic")
    run.keeps_up = not run.why
    print(f"   lake poller: {poller.objects} objects read, errors {dict(poller.errors) or 'none'}", flush=True)

    # Baselines on the same broker, the stack idle.
    run.produce_rate = await produce_baseline(settings, args.baseline_events)
    run.hop = await kafka_hop(settings, args.hop_samples, 60.0, topic=f"{settings.topic_prefix}bench-hop")
    print_run(run)


async def produce_baseline(settings: Settings, count: int) -> float:
    """Events/s of one producer with the API's settings, the run's own raw records, all acknowledged."""
    topics = Topics.from_settings(settings)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                              enable_auto_commit=False, auto_offset_reset="earliest")
    await reader.start()
    records: list[tuple[bytes | None, bytes]] = []
    try:
        tps = [TopicPartition(topics.raw, p) for p in range(settings.topic_partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        while len(records) < 2000:
            batch = await reader.getmany(timeout_ms=2000)
            if not batch:
                break
            records += [(r.key, r.value) for rs in batch.values() for r in rs]
    finally:
        await reader.stop()
    if not records:
        return float("nan")
    topic = f"{settings.topic_prefix}bench-produce"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**producer_config(settings))
    await producer.start()
    try:
        await (await producer.send(topic, b"warm-up"))
        start = time.monotonic()
        for first in range(0, count, 5000):
            futures = [await producer.send(topic, key=records[i % len(records)][0], value=records[i % len(records)][1])
                       for i in range(first, min(count, first + 5000))]
            await asyncio.gather(*futures)
        return count / (time.monotonic() - start)
    finally:
        await producer.stop()


# --- reporting ------------------------------------------------------------------------------------

def ms(values: list[float], q: float) -> str:
    return f"{p(values, q) * 1000:,.0f}" if values else "-"


def print_run(run: Run) -> None:
    print(f"   traffic: asked {run.rate:g}/s, planned {run.planned_rate:,.0f}/s, acknowledged {run.acked_rate:,.0f}/s "
          f"({run.accepted_rate:,.0f}/s accepted), last answer {run.late_s:+.1f} s after the schedule's end; "
          f"middle half: planned {run.mid_planned_rate:,.0f}/s, acknowledged {run.mid_acked_rate:,.0f}/s; answers "
          f"after their due time p99 {run.api_delay_p99:.2f} s, growth Q2->Q4 {run.api_delay_growth:+.2f} s; "
          f"answers {run.statuses}; failed {run.failed}, answers unlike the model {run.mismatches}", flush=True)
    print(f"   ingest latency (2xx attempts, n={len(run.ingest):,}): p50 {ms(run.ingest, 50)} ms, "
          f"p99 {ms(run.ingest, 99)} ms; marker POSTs p50 {ms(run.marker_ingest, 50)} ms", flush=True)
    print(f"   event-to-lake (n={len(run.lake)} of {run.markers_sent}): p50 {ms(run.lake, 50)} ms, "
          f"p99 {ms(run.lake, 99)} ms, max {ms(run.lake, 100)} ms; to the object's S3 mtime p50 "
          f"{ms(run.lake_written, 50)} ms, p99 {ms(run.lake_written, 99)} ms", flush=True)
    print(f"   event-to-reaction (n={len(run.reaction)} of {run.reactions_expected}): p50 {ms(run.reaction, 50)} ms, "
          f"p99 {ms(run.reaction, 99)} ms, max {ms(run.reaction, 100)} ms; marker failures "
          f"{run.marker_failures or 'none'}", flush=True)
    for group, info in run.lag.items():
        drained = f"{info['drained_s']:.1f} s" if info["drained_s"] is not None else "not drained"
        print(f"   lag {group:<9}: input {info['input_rate']:,.1f} records/s, max {info['max_lag']:,.0f}, growth "
              f"Q2->Q4 {info['growth_s']:+.2f} s of input, {'bounded' if info['kept_up'] else 'GROWING'}; "
              f"back to 0 {drained} after the traffic; lag over time {info['series']}", flush=True)
    cpu = ", ".join(f"{n} {c:.2f}" for n, c in run.cpu.items())
    print(f"   CPU (cores over the traffic): {cpu}; this script {run.bench_cpu:.2f}; other processes "
          f"{run.other_cpu:.2f} ({'; '.join(f'{n} {c:.2f}' for n, c in run.top_others) or 'none named'}); "
          f"load {run.load[0]:.2f} -> {run.load[1]:.2f}", flush=True)
    print("   peak RSS (VmHWM): " + ", ".join(f"{n} {b / 2**20:,.0f} MiB" for n, b in run.hwm.items())
          + (f"; restarts {run.restarts}" if run.restarts else ""), flush=True)
    print(f"   baseline: raw producer {run.produce_rate:,.0f} events/s; one Kafka hop p50 {ms(run.hop, 50)} ms, "
          f"p99 {ms(run.hop, 99)} ms", flush=True)
    verdict = "KEEPS UP" if run.keeps_up else "FALLS BEHIND: " + "; ".join(run.why)
    print(f"   => {verdict}", flush=True)


def summary(runs: list[Run], duration: float) -> None:
    """Medians over the confirmation runs, beside the baselines."""
    med = statistics.median
    print(f"\n== summary: {len(runs)} run(s) of {duration:g} s at {runs[0].rate:g} events/s asked "
          f"({sum(r.keeps_up for r in runs)} kept up); medians over runs ==")
    rows = [
        ("acknowledged events/s", med(r.acked_rate for r in runs), "{:,.0f}"),
        ("raw producer events/s (baseline)", med(r.produce_rate for r in runs), "{:,.0f}"),
        ("acknowledged / producer", med(r.acked_rate / r.produce_rate for r in runs), "{:.3f}"),
        ("ingest p50 ms", med(p(r.ingest, 50) for r in runs) * 1000, "{:,.0f}"),
        ("ingest p99 ms", med(p(r.ingest, 99) for r in runs) * 1000, "{:,.0f}"),
        ("event-to-lake p50 ms", med(p(r.lake, 50) for r in runs) * 1000, "{:,.0f}"),
        ("event-to-lake p99 ms", med(p(r.lake, 99) for r in runs) * 1000, "{:,.0f}"),
        ("event-to-reaction p50 ms", med(p(r.reaction, 50) for r in runs) * 1000, "{:,.0f}"),
        ("event-to-reaction p99 ms", med(p(r.reaction, 99) for r in runs) * 1000, "{:,.0f}"),
        ("one Kafka hop p50 ms (baseline)", med(p(r.hop, 50) for r in runs) * 1000, "{:,.0f}"),
        ("one Kafka hop p99 ms (baseline)", med(p(r.hop, 99) for r in runs) * 1000, "{:,.0f}"),
        ("reaction p50 / (ingest p50 + 2 hops p50)",
         med(p(r.reaction, 50) / (p(r.ingest, 50) + 2 * p(r.hop, 50)) for r in runs), "{:.2f}"),
        ("other processes' CPU (cores)", med(r.other_cpu for r in runs), "{:.2f}"),
        ("this script's CPU (cores)", med(r.bench_cpu for r in runs), "{:.2f}"),
    ]
    for name, value, fmt in rows:
        print(f"{name:<44} {fmt.format(value):>10}")
    print(f"{'component':<12} {'CPU cores':>10} {'peak RSS MiB':>13}")
    for name in [*COMPONENTS, "supervisor"]:
        cores = med(r.cpu.get(name, 0.0) for r in runs)
        hwm = med(r.hwm.get(name, 0) for r in runs) / 2**20 if name in runs[0].hwm else float("nan")
        print(f"{name:<12} {cores:>10.2f} {hwm:>13,.0f}")
    for group in runs[0].lag:
        print(f"lag {group:<9} max {med(r.lag[group]['max_lag'] for r in runs):>9,.0f} records, growth "
              f"{med(r.lag[group]['growth_s'] for r in runs):+.2f} s of input")


def as_json(run: Run) -> dict:
    out = dict(run.__dict__)
    for key in ("ingest", "marker_ingest", "lake", "lake_written", "reaction", "hop"):
        values = out.pop(key)
        out[key] = {"n": len(values), "p50": p(values, 50), "p99": p(values, 99),
                    "max": max(values) if values else None}
    return out


async def main_async(args) -> None:
    runs: dict[str, list[Run]] = {"probe": [], "confirm": []}

    def record(kind: str, run: Run) -> None:
        runs[kind].append(run)
        if args.json:
            args.json.write_text(json.dumps({k: [as_json(r) for r in v] for k, v in runs.items()}, indent=1,
                                            default=str))

    best = args.confirm_rate
    if best is None:
        failed_at = None
        for rate in args.rates:
            run = await one_run(args, rate, args.probe_duration, f"probe {rate:g}")
            record("probe", run)
            if not run.keeps_up:
                failed_at = rate
                break
            best = rate
        if args.refine and best is not None and failed_at is not None:
            mid = round((best + failed_at) / 2)
            run = await one_run(args, mid, args.probe_duration, f"probe {mid:g}")
            record("probe", run)
            if run.keeps_up:
                best = mid
        print(f"\nsearch: highest probed rate that kept up: {best if best is not None else 'none'}"
              + (f"; first that did not: {failed_at:g}" if failed_at is not None else ""), flush=True)
        print("probes: " + "; ".join(f"{r.rate:g}/s -> {'kept up' if r.keeps_up else 'fell behind'}"
                                     for r in runs["probe"]), flush=True)
    if best is None:
        return
    lower = sorted((r.rate for r in runs["probe"] if r.keeps_up and r.rate < best), reverse=True)
    i = 0
    while i < args.repeat:
        run = await one_run(args, best, args.duration, f"confirm {best:g} #{i + 1}")
        record("confirm", run)
        i += 1
        if not run.keeps_up and lower and args.step_down:
            # The probe's rate did not hold for the full duration: confirm the next lower probe instead.
            best, lower, i = lower[0], [], 0
            print(f"\nconfirmation failed: confirming {best:g} events/s instead", flush=True)
    confirmed = [r for r in runs["confirm"] if r.rate == best]
    if confirmed:
        summary(confirmed, args.duration)


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt  # SIGTERM (and SIGINT) end the run through main()'s clean-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=lambda t: [float(x) for x in t.split(",")], default=[400, 800, 1200, 1600],
                        help="probe rates (events/s), in increasing order")
    parser.add_argument("--probe-duration", type=float, default=60)
    parser.add_argument("--refine", action="store_true", help="one more probe between the last pass and first fail")
    parser.add_argument("--confirm-rate", type=float, help="skip the search: confirm at this rate")
    parser.add_argument("--duration", type=float, default=300, help="seconds of each confirmation run")
    parser.add_argument("--repeat", type=int, default=3, help="confirmation runs")
    parser.add_argument("--no-step-down", dest="step_down", action="store_false",
                        help="when a confirmation run falls behind, do not move to the next lower probe rate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=128, help="loadgen requests in flight at most")
    parser.add_argument("--flush-interval", type=float, default=5.0, help="CLICKSTREAM_FLUSH_INTERVAL_S")
    parser.add_argument("--partitions", type=int, default=4, help="CLICKSTREAM_TOPIC_PARTITIONS")
    parser.add_argument("--marker-every", type=float, default=2.0, help="seconds between marker visitors")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between lag samples")
    parser.add_argument("--lake-poll", type=float, default=1.0, help="seconds between listings of the lake")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds allowed for lag to return to 0")
    parser.add_argument("--baseline-events", type=int, default=20000)
    parser.add_argument("--hop-samples", type=int, default=300)
    parser.add_argument("--keep-logs", type=Path, help="copy each run's .clickstream/logs here")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    started = time.monotonic()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                           text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit}{' + changes' if dirty else ''}; "
          f"{load()}", flush=True)
    base = Settings(_env_file=None)
    print(f"settings: flush interval {args.flush_interval:g} s, partitions {args.partitions}, windows "
          f"{base.windows_s}, lateness {base.lateness_s} s, idle timeout {base.idle_timeout_s:g} s, session "
          f"timeout {base.session_timeout_s} s; loadgen seed {args.seed}, concurrency {args.concurrency}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background, where it is ignored
    try:
        asyncio.run(main_async(args))
    finally:
        for stack in list(ACTIVE):
            stack.down()
            shutil.rmtree(stack.workdir, ignore_errors=True)
    print(f"\ntotal time {time.monotonic() - started:.0f} s; {load()}")


if __name__ == "__main__":
    main()
