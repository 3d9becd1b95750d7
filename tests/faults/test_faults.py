"""The fault suite: the whole local stack under loadgen traffic while, in turn, the sink, the stream
processor, the reactor, the ingest API, the broker and the S3 server are killed with SIGKILL and
come back (the services restarted by `clickstream up`'s supervisor, the servers by this test).

After recovery:

* every event the API answered 2xx for is in the lake exactly once, and nothing else is;
* the sessions and the per-window metrics equal those computed from those events as a run
  without faults would (same session rule, same windows), and no row is there twice;
* the API answered 503 (never 2xx) to what was sent while the broker was down;
* every reaction reached the webhook exactly once.

The broker and the S3 server run outside the stack here (as external services the stack is
pointed at) so that the test decides how long they stay down.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from clickstream.events import Event
from clickstream.settings import Settings
from clickstream.topics import Topics
from clickstream.stack.launcher import component_status
from clickstream.stack.probes import free_port, http_ok
from conftest import ACCESS_KEY, BROKER_LOG_BUCKET, REGION, SECRET_KEY, start_tansu, start_weed, wait_until
from loadgen.plan import plan_run
from loadgen.sender import send_deliveries
from query.engine import QueryError, connect, run_query
from reactors.store import read_dead_letters
from stream_processor.app import processing_config
from stream_processor.partition import PartitionProcessor
from stream_processor.rules import RuleSet
from webhook import Webhook

pytestmark = pytest.mark.integration

SECRET = "faults-secret"
RATE, DURATION_S, SEED = 25, 105, 11
WINDOW_S, SESSION_TIMEOUT_S = 10, 15
# Longer than the outages below hold events up (the broker's plus the API's 503 timeout and
# Retry-After), so that none of them is late, as in a run without faults.
LATENESS_S = 45
BROKER_DOWN_S, S3_DOWN_S = 8, 6
# When each component is killed, in seconds after the traffic started.
FAULTS = (("sink", 8), ("processor", 20), ("reactor", 34), ("api", 44), ("broker", 54), ("s3", 84))
SERVICES = ("sink", "processor", "reactor", "api", "dashboard")
HEALTH = {"sink": "/health", "processor": "/health", "reactor": "/health", "api": "/healthz"}

# A reaction for every session (from the partitions' processors) and for every window with events
# (from the merger), no cooldown: reactions keep coming while the reactor is killed.
RULES = """\
rules:
  - name: every_session
    kind: session
    field: event_count
    above: 0
    cooldown_s: 0
  - name: every_window
    kind: threshold
    metric: events
    at_least: 1
    window_s: 10
    cooldown_s: 0
"""


class Servers:
    """The S3 server and the broker (its log on that S3 server), each killed and restarted on its ports."""

    def __init__(self, root: Path):
        self.root = root
        self.s3 = start_weed(root / "s3", [BROKER_LOG_BUCKET, "lake"])
        self.s3_url = f"http://127.0.0.1:{self.s3.port}"
        self.broker = start_tansu(free_port(), self.s3_url, root / "tansu.log")

    def kill(self, name: str) -> None:
        server = getattr(self, name)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()

    def start(self, name: str) -> None:
        if name == "s3":
            self.s3 = start_weed(self.root / "s3", [BROKER_LOG_BUCKET, "lake"], self.s3.port, self.s3.other_ports)
        else:
            self.broker = start_tansu(self.broker.port, self.s3_url, self.root / "tansu.log")

    def ensure_running(self) -> None:
        # The broker keeps its log on S3: one that gave up while S3 was away is started again.
        if self.broker.process.poll() is not None:
            self.start("broker")

    def stop(self) -> None:
        self.broker.stop()
        self.s3.stop()


def clickstream(*args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def lake(settings: Settings, sql: str) -> list[dict]:
    """Rows of a query over the lake; none while the table has no file yet."""
    try:
        columns, rows = run_query(connect(settings), sql)
    except QueryError:
        return []
    return [dict(zip(columns, row)) for row in rows]


def kill_service(settings: Settings, name: str) -> None:
    """SIGKILL a service of the stack and wait until the supervisor has it running and healthy again."""
    before = component_status(settings)["components"][name]["pid"]
    os.kill(before, signal.SIGKILL)

    def back():
        now = component_status(settings)["components"][name]
        return now["pid"] != before and http_ok(now["url"] + HEALTH[name])

    wait_until(back, 120, f"the {name} restarted and healthy", 0.5)


def fault_free_sessions(records, settings: Settings) -> Counter:
    """The sessions a worker that never stopped makes of the raw topic as it is (same records, same
    order): the plain per-partition logic run here over every record, then its tail closed."""
    now = datetime.now(timezone.utc)
    by_partition = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    sessions = Counter()
    for partition, part in sorted(by_partition.items()):
        proc = PartitionProcessor(partition, processing_config(settings), {}, lambda: RuleSet())
        closed = []
        for record in sorted(part, key=lambda r: r.offset):
            closed += proc.process(Event.from_bytes(record.value), record.topic, record.offset, now=now,
                                   wall=0).sessions
        closed += proc.advance(1e12, now=now).sessions  # far past every event
        sessions.update(session_key(s.session_id, s.session_start, s.session_end, s.event_count, s.page_views)
                        for s in closed)
    return sessions


def session_key(session_id, start: datetime, end: datetime, events: int, page_views: int) -> tuple:
    return session_id, round(start.timestamp() * 1000), round(end.timestamp() * 1000), events, page_views


def session_differences(got: Counter, expected: Counter) -> str:
    extra, missing = got - expected, expected - got
    return f"{len(extra)} sessions not expected, e.g. {sorted(extra)[:5]}; {len(missing)} missing, e.g. {sorted(missing)[:5]}"


@pytest.mark.timeout(900)
def test_every_component_killed_in_turn_loses_and_duplicates_nothing(tmp_path, read_topic):
    servers = Servers(tmp_path / "servers")
    webhook = Webhook(SECRET)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        _env_file=None, kafka_bootstrap_servers=f"127.0.0.1:{servers.broker.port}", s3_endpoint=servers.s3_url,
        s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY, s3_region=REGION, s3_bucket="lake",
        api_port=free_port(), dashboard_port=free_port(), processor_port=free_port(), reactor_port=free_port(),
        sink_port=free_port(), state_dir=tmp_path / ".clickstream", demo_write_key="faults-key",
        windows_s=[WINDOW_S], session_timeout_s=SESSION_TIMEOUT_S, lateness_s=LATENESS_S, idle_timeout_s=3,
        flush_interval_s=2,
        rules_file=rules, webhook_url=webhook.url, webhook_secret=SECRET,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    started = clickstream("up", "--detach", env=env, cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        api = settings.url(settings.api_port)
        plan = plan_run(SEED, rate=RATE, duration_s=DURATION_S, now=datetime.now(timezone.utc))
        sent: dict = {}

        def traffic():
            async def run():
                async with httpx.AsyncClient(base_url=api, timeout=30) as client:
                    # Enough attempts to outlast every outage below.
                    return await send_deliveries(plan.deliveries, client, settings.demo_write_key, max_attempts=40)

            sent["report"] = asyncio.run(run())

        sender = threading.Thread(target=traffic)
        begin = time.monotonic()
        sender.start()
        outages = {}
        for name, at in FAULTS:
            time.sleep(max(0.0, begin + at - time.monotonic()))
            if name in ("broker", "s3"):
                down = time.monotonic()
                servers.kill(name)
                time.sleep(BROKER_DOWN_S if name == "broker" else S3_DOWN_S)
                servers.start(name)
                outages[name] = (down, time.monotonic())
                servers.ensure_running()
            else:
                kill_service(settings, name)
        sender.join(DURATION_S + 600)
        assert not sender.is_alive(), "the traffic did not finish"
        report = sent["report"]
        assert not report.failed, report.failed[:3]
        assert not report.mismatches, report.mismatches[:3]

        # While the broker was down the API said 503, never 2xx; some of the traffic saw it.
        down, back = outages["broker"]
        during = [status for t_sent, t_answered, status in report.attempts if t_sent > down + 0.5 and t_answered < back]
        assert not [s for s in during if isinstance(s, int) and 200 <= s < 300], Counter(during)
        assert 503 in during, Counter(during)

        accepted = {call.message_id for d in report.acknowledged for call in d.calls if call.valid}

        # Every event that got a 2xx, exactly once, and nothing else.
        def all_events():
            rows = lake(settings, "select event_id from events")
            return rows if len(rows) >= len(accepted) else None

        rows = wait_until(all_events, 240, "every accepted event in the lake", 2)
        ids = Counter(r["event_id"] for r in rows)
        assert [i for i, n in ids.items() if n > 1] == []
        assert set(ids) == accepted

        # Sessions: as a worker that never stopped makes them of the same input, each once; and
        # every event belongs to one, the count of each as the session says.
        raw = read_topic(settings.bootstrap_servers, Topics.from_settings(settings).raw, 10**9, 10)
        expected = fault_free_sessions(raw, settings)

        def closed():
            got = lake(settings, "select session_id, session_start, session_end, event_count, page_views from sessions")
            return got if len(got) >= sum(expected.values()) else None

        sessions = wait_until(closed, 180, "every session closed in the lake", 2)
        got = Counter(session_key(*r.values()) for r in sessions)
        assert got == expected, session_differences(got, expected)
        per_session = Counter(r["session_id"] for r in lake(settings, "select session_id from events"))
        assert per_session == {r["session_id"]: r["event_count"] for r in sessions}
        events = lake(settings, "select epoch_ms(timestamp) as t, type from events")

        # Metrics: events and page views per window as counted from the lake's events, and sessions
        # ended as counted from its sessions, each row once.
        windows = defaultdict(Counter)
        for e in events:
            start = e["t"] // 1000 // WINDOW_S * WINDOW_S
            windows["events"][start] += 1
            windows["page_views"][start] += e["type"] == "page"
        # A session ends in the window holding its last event plus the timeout.
        window_us, timeout_us = WINDOW_S * 1_000_000, SESSION_TIMEOUT_S * 1_000_000
        for r in lake(settings, "select epoch_us(session_end) as e from sessions"):
            windows["sessions_ended"][(r["e"] + timeout_us) // window_us * WINDOW_S] += 1
        last = max(max(windows["events"]), max(windows["sessions_ended"]))

        def final():
            got = lake(settings, f"select metric, epoch(window_start)::bigint as w, source, value from metrics"
                                 f" where dimension = '' and window_s = {WINDOW_S}")
            return got if any(r["w"] >= last for r in got) else None

        rows = wait_until(final, 120, "the metrics of the last window", 2)
        assert [k for k, n in Counter((r["metric"], r["w"], r["source"]) for r in rows).items() if n > 1] == []
        for metric in ("events", "page_views", "sessions_ended"):
            got = {r["w"]: r["value"] for r in rows if r["metric"] == metric and r["value"]}
            assert got == {w: float(n) for w, n in windows[metric].items() if n}, metric
        assert sum(r["value"] for r in rows if r["metric"] == "late_events") == 0

        # Reactions: none delivered twice; each delivered, or a dead letter of a delivery that the
        # reactor's kill cut short (it may or may not have reached the webhook: never sent again).
        def in_doubt() -> set:
            letters = asyncio.run(read_dead_letters(settings))
            assert all("outcome unknown" in letter.last_error for letter in letters), letters
            return {letter.reaction.reaction_id for letter in letters}

        def delivered():
            fired = {r["reaction_id"] for r in lake(settings, "select reaction_id from reactions")}
            keys = {key for key, _ in webhook.received}
            return fired if fired and fired <= keys | in_doubt() else None

        fired = wait_until(delivered, 120, "every reaction at the webhook or dead-lettered", 2)
        time.sleep(3)  # a second delivery would be a defect: give it the chance to show
        counts = Counter(key for key, _ in webhook.received)
        assert [k for k, n in counts.items() if n > 1] == [] and set(counts) <= fired and webhook.unsigned == []
        kinds = Counter(body["rule"] for _, body in webhook.received)
        assert kinds["every_session"] + len(in_doubt()) >= len(sessions) and kinds["every_window"] > 0

        restarts = {n: c["restarts"] for n, c in json.loads(
            clickstream("status", "--json", env=env, cwd=tmp_path).stdout)["components"].items()}
        assert all(restarts[name] >= 1 for name, _ in FAULTS if name in SERVICES), restarts
    finally:
        clickstream("down", env=env, cwd=tmp_path)
        webhook.close()
        servers.stop()
