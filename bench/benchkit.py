"""Scaffolding shared by the benchmarks in ``bench/``: CPU and memory accounting on a shared
machine, percentiles, and one Kafka hop as a latency baseline.

A script imports it before it takes its own folder off ``sys.path`` (there, ``bench/query.py``
and ``bench/sink.py`` would shadow the ``query`` and ``sink`` packages), so nothing here may
import those packages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections import defaultdict
from collections.abc import Callable

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from clickstream.kafka import producer_config
from clickstream.settings import Settings

# --- shared-machine accounting -----------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def with_tansu_storage(components: list, storage: str | None) -> list:
    """The stack's components with Tansu's ``--storage-engine`` set to ``storage`` (e.g. ``memory://``)
    instead of its S3 log: a diagnostic that shows what the S3 log costs. None leaves them as they are."""
    if not storage:
        return components
    return [c if c.name != "broker" else dataclasses.replace(c, command=[
        storage if prev == "--storage-engine" else arg for prev, arg in zip([None, *c.command], c.command)])
        for c in components]


def busy_ticks() -> int:
    """CPU ticks the whole machine spent busy (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def process_ticks(pid: int) -> int:
    """user + system ticks of a process, plus those of its children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    except (OSError, IndexError):
        return 0


def process_tree(root: int) -> set[int]:
    """``root`` and all its descendants alive now."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


class CpuMeter:
    """Cores used over an interval by the machine, by this benchmark's process tree, by the rest,
    and by one watched process (the worker)."""

    def __init__(self, watched: int | None = None):
        self.watched = watched

    def __enter__(self) -> CpuMeter:
        self.pids = process_tree(os.getpid())
        self.t0, self.busy0 = time.monotonic(), busy_ticks()
        self.own0 = {p: process_ticks(p) for p in self.pids}
        return self

    def __exit__(self, *exc) -> None:
        pids = process_tree(os.getpid()) | self.pids
        seconds = max(time.monotonic() - self.t0, 1e-9)
        used = {p: (process_ticks(p) - self.own0.get(p, 0)) / TICK / seconds for p in pids}
        self.machine = (busy_ticks() - self.busy0) / TICK / seconds
        self.others = max(0.0, self.machine - sum(used.values()))
        self.worker = used.get(self.watched, 0.0) if self.watched else 0.0


def vm_status(pid: int, field_name: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in bytes; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# --- one Kafka hop -----------------------------------------------------------------------------

async def reaction_receiver(port: int, clock: Callable[[], float]) -> tuple[web.AppRunner, dict[str, float]]:
    """A webhook receiver at ``http://127.0.0.1:{port}/hook`` (the reactor's ``CLICKSTREAM_WEBHOOK_URL``)
    and the time, by ``clock``, each reaction subject first arrived. Stop it with ``runner.cleanup()``."""
    arrivals: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        now = clock()
        body = await request.json()
        arrivals.setdefault(body.get("subject", ""), now)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, arrivals


async def kafka_hop(settings: Settings, samples: int, rate: float, topic: str | None = None) -> list[float]:
    """Seconds from an aiokafka ``send`` (the services' producer settings) to a consumer's
    ``getmany`` returning the record, on a one-partition topic, ``samples`` records at ``rate``/s."""
    topic = topic or f"{settings.topic_prefix}hop"
    producer = AIOKafkaProducer(**producer_config(settings))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                auto_offset_reset="latest")
    await producer.start()
    await (await producer.send(topic, b"warm-up"))
    await consumer.start()
    await consumer.seek_to_end()
    sent: dict[bytes, float] = {}
    latencies: list[float] = []

    async def read() -> None:
        while len(latencies) < samples:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                now = time.perf_counter()
                latencies.extend(now - sent[r.value] for r in records if r.value in sent)

    reader = asyncio.create_task(read())
    try:
        start = time.perf_counter()
        for i in range(samples):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            value = f"hop-{i}".encode()
            sent[value] = time.perf_counter()
            await producer.send(topic, value)
        await asyncio.wait_for(reader, 60)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return latencies
