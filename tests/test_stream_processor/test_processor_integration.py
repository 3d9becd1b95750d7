"""The processor on the real broker: known answers, a SIGKILL mid-stream, and two workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading

import httpx
import pytest

from clickstream import metrics as m
from clickstream.kafka import create_topics
from clickstream.events import Event
from clickstream.sessions import SessionRecord
from clickstream.stack.probes import http_ok
from clickstream.topics import Topics
from conftest import wait_until
from stream_processor.sessions import session_id_for
from test_stream_processor.stream import WINDOW_S, generate, produce, settings_for, start_processor

pytestmark = pytest.mark.integration


def stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except Exception:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(settings, process, log, port=None, alone=False):
    """Until the worker's /health says it holds partitions with their state loaded; ``alone``: all of
    them (a worker that joined a group still listing a killed member may first get only a share)."""
    url = f"http://127.0.0.1:{port or settings.processor_port}/health"
    everything = list(range(settings.topic_partitions))
    current = (lambda: process.process) if isinstance(process, Supervised) else (lambda: process)

    def ready():
        if current().poll() is not None or not http_ok(url):
            return current().poll() is not None
        try:
            return not alone or httpx.get(url).json()["assigned"] == everything
        except httpx.HTTPError:  # between a rebalance's steps
            return False

    try:
        wait_until(ready, 90, "the processor's /health" + (" with every partition" if alone else ""))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker_story(current(), log)}") from None
    assert current().poll() is None, worker_story(current(), log)


class Supervised:
    """A worker restarted when it exits with 75, as ``clickstream up`` and compose restart it: the
    code by which it gives up on a failed checkpoint, to resume from its saved state."""

    def __init__(self, settings, log):
        self.settings, self.log, self.restarts = settings, log, 0
        self.process = start_processor(settings, log)
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._keep_running, daemon=True)
        self._watch.start()

    def _keep_running(self) -> None:
        while not self._stopping.wait(0.2):
            if self.process.poll() == 75:
                self.restarts += 1
                self.process = start_processor(self.settings, self.log)

    def story(self) -> str:
        return f"restarted {self.restarts} times after exit 75; " + worker_story(self.process, self.log)

    def stop(self) -> None:
        self._stopping.set()
        self._watch.join()
        stop(self.process)


def resume_and_check(settings, log, stream, read_topic) -> None:
    """Start a supervised worker on the saved state, wait until it holds every partition, and check
    that the outputs, with those sent before, hold each session, event and window once."""
    worker = Supervised(settings, log)
    try:
        wait_ready(settings, worker, log, alone=True)
        check_each_output_once(read_topic, settings, stream, worker.story)
        check_next_pages(settings, stream)
    finally:
        worker.stop()


def worker_story(process, log, lines: int = 40) -> str:
    """How the worker is doing, for a failure message: its exit status and the end of its log
    without the debug lines (a failure in CI shows nothing else of it)."""
    status = "running" if process.poll() is None else f"exited with {process.returncode}"
    tail = [line[:300] for line in log.read_text(errors="replace").splitlines()
            if "[DEBUG]" not in line and not line.startswith(("+", "|"))][-lines:]
    return f"the worker is {status}; the end of its log:\n" + "\n".join(tail)


def check_sessions(records, stream, story=lambda: ""):
    sessions = {}
    for r in records:
        s = SessionRecord.from_bytes(r.value)
        # Once, also after a crash: the restarted worker does not send again what it sent before.
        assert s.session_id not in sessions, f"session {s.session_id} sent twice"
        sessions[s.session_id] = s
    expected = {session_id_for(*k.split("|")): v for k, v in stream.sessions.items()}
    got = {k: (s.event_count, s.page_views) for k, s in sessions.items()}
    missing = sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & got.keys() if got[k] != expected[k])
    # A short account rather than pytest's diff of two thousand-entry dicts, so the story fits.
    assert not (missing or extra or wrong), (
        f"of {len(expected)} sessions {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected "
        f"(e.g. {extra[:3]}), {len(wrong)} with other counts (e.g. {[(k, got[k], expected[k]) for k in wrong[:3]]})"
        f"\n{story()}")


def check_page_views(records, stream):
    rows = {}
    for r in records:
        row = m.MetricRow.from_bytes(r.value)
        if row.metric == m.PAGE_VIEWS and row.dimension == "" and row.window_s == WINDOW_S:
            key = int(row.window_start.timestamp())
            assert key not in rows, f"page views of the window at {key} sent twice"
            rows[key] = row.value
    assert {k: v for k, v in rows.items() if v} == {k: float(v) for k, v in stream.page_views.items()}


def read_outputs(read_topic, settings, stream, timeout=120):
    topics = Topics.from_settings(settings)
    sessions = read_topic(settings.bootstrap_servers, topics.sessions, len(stream.sessions), timeout)
    distinct = len(set(e.event_id for e in stream.events))
    events = read_topic(settings.bootstrap_servers, topics.events, distinct, 60)
    return sessions, events


def check_each_output_once(read_topic, settings, stream, story=lambda: ""):
    """Every event forwarded once, every session and window once, with the known answers."""
    sessions, events = read_outputs(read_topic, settings, stream)
    check_sessions(sessions, stream, story)
    forwarded = sorted(Event.from_bytes(r.value).event_id for r in events)
    expected = sorted(set(e.event_id for e in stream.events))
    assert forwarded == expected, f"{len(forwarded)} events forwarded of {len(expected)}\n{story()}"
    wait_for_metrics(read_topic, settings, stream)


def test_known_answers_sessions_windows_and_dedup(settings_factory, read_topic, tmp_path):
    settings = settings_for(settings_factory)
    stream = generate(seed=1)
    produce(settings, stream.events)
    log = tmp_path / "processor.log"
    worker = Supervised(settings, log)
    try:
        wait_ready(settings, worker, log, alone=True)
        sessions, events = read_outputs(read_topic, settings, stream)
        check_sessions(sessions, stream, worker.story)
        forwarded = [Event.from_bytes(r.value) for r in events]
        assert sorted(e.event_id for e in forwarded) == sorted(set(e.event_id for e in stream.events))
        assert all(e.session_id for e in forwarded)
        # Windows close on the watermark, the last ones after the idle timeout.
        wait_for_metrics(read_topic, settings, stream)
        check_next_pages(settings, stream)
        assert httpx.get(f"http://127.0.0.1:{settings.processor_port}/v1/recommendations").status_code == 400
    finally:
        worker.stop()


def check_next_pages(settings, stream):
    """Next pages, counted from the page-to-page steps of the sessions (all one source here), each
    step once: also when a worker sent its counts and then stopped before its checkpoint."""
    url = f"http://127.0.0.1:{settings.processor_port}/v1/recommendations"
    for page in ("/", "/pricing", "/docs"):
        expected = sorted(((b, n) for (a, b), n in stream.transitions.items() if a == page),
                          key=lambda x: (-x[1], x[0]))

        def answer(page=page, expected=expected):
            got = httpx.get(url, params={"path": page, "limit": 5}).json()["recommendations"]
            return got if sum(x["count"] for x in got) >= sum(n for _, n in expected) else None

        got = wait_until(answer, 30, f"the next pages of {page}")
        assert [(x["path"], x["count"]) for x in got] == expected, page


def wait_for_metrics(read_topic, settings, stream):
    """Windows close on the watermark, the last ones after the idle timeout: wait for the last one."""
    topic = Topics.from_settings(settings).metrics
    last = max(stream.page_views)

    def rows():
        records = read_topic(settings.bootstrap_servers, topic, 10**9, 3)
        done = any(m.MetricRow.from_bytes(r.value).window_start.timestamp() >= last for r in records)
        return records if done else None

    records = wait_until(rows, 60, "the metric rows of the last window")
    check_page_views(records, stream)


def test_sigkill_mid_stream_gives_the_same_sessions_and_metrics(settings_factory, read_topic, tmp_path):
    settings = settings_for(settings_factory)
    stream = generate(seed=2, visitors=800)
    produce(settings, stream.events)
    log = tmp_path / "processor.log"
    process = start_processor(settings, log)
    try:
        wait_ready(settings, process, log)
        # Kill it while it works: after its first checkpoint, before it could have finished.
        health = f"http://127.0.0.1:{settings.processor_port}/health"
        out = wait_until(lambda: httpx.get(health).json().get("events_out"), 60, "the first checkpoint", 0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert out < len(set(e.event_id for e in stream.events)), "finished before the kill: use more events"
        resume_and_check(settings, log, stream, read_topic)
    finally:
        stop(process)


def test_stopped_between_sending_and_saving_sends_nothing_twice(settings_factory, read_topic, tmp_path):
    """The worker ends (as under SIGKILL) right after the broker acknowledged outputs and before the
    state covering them was saved: first the partitions' processor, then the same after the
    visitors' states were saved and before the checkpoint, then the merger. The worker that resumes
    finds those outputs and does not send them again."""
    settings = settings_for(settings_factory)
    stream = generate(seed=4, visitors=300)
    produce(settings, stream.events)
    log = tmp_path / "processor.log"
    for point in ("outputs-sent:2", "states-saved:2", "merger-outputs-sent:1"):
        process = start_processor(settings, log, processor_failpoint=point)
        assert process.wait(120) == 70, log.read_text()[-3000:]
    resume_and_check(settings, log, stream, read_topic)
    text = log.read_text()
    found = [int(n) for n in re.findall(r"; (\d+) outputs sent before a restart", text)]
    assert any(found), "the restarted workers found nothing they had sent: the test tested nothing"
    merger = [int(n) for n in re.findall(r"merger: state loaded; (\d+) outputs", text)]
    assert any(merger), "the merger found no rows it had sent: the test tested nothing"
    ends = [int(n) for n in re.findall(r"; (\d+) session ends and \d+ held events found", text)]
    assert any(ends), "no state saved after a checkpoint closed a session: the test tested nothing"


def test_two_workers_split_the_partitions_and_give_the_same_totals(settings_factory, read_topic, tmp_path,
                                                                    free_ports):
    settings = settings_for(settings_factory)
    stream = generate(seed=3, visitors=60)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    ports = [settings.processor_port, free_ports()]
    # The topics exist before the workers start, as the stack creates them: a group leader that
    # assigns while the input topic is missing gives nobody its partitions until a later rebalance.
    asyncio.run(create_topics(settings))
    workers = [start_processor(settings, logs[0]), start_processor(settings, logs[1], processor_port=ports[1])]
    try:
        for worker, log, port in zip(workers, logs, ports):
            wait_ready(settings, worker, log, port=port)

        def split():
            held = [httpx.get(f"http://127.0.0.1:{port}/health").json() for port in ports]
            return all(h["status"] == "ok" for h in held) and [h["assigned"] for h in held]

        # Both joined the group and each holds some of the input partitions.
        held = wait_until(lambda: (h := split()) and all(h) and h, 60, "both workers holding partitions")
        assert sorted(held[0] + held[1]) == list(range(settings.topic_partitions)), held
        produce(settings, stream.events)
        sessions, _ = read_outputs(read_topic, settings, stream)
        check_sessions(sessions, stream)
        wait_for_metrics(read_topic, settings, stream)
        assert [httpx.get(f"http://127.0.0.1:{port}/health").json()["assigned"] for port in ports] == held
    finally:
        for worker in workers:
            stop(worker)


def test_a_checkpoint_the_broker_never_answers_ends_the_worker_and_the_restart_resumes(settings_factory, read_topic,
                                                                                       tmp_path):
    """A produce that never returns (here a failpoint that waits forever after the outputs were
    sent) would hold every output of the worker; the checkpoint's time limit ends it with 75, and the
    worker restarted from its saved state sends each output once."""
    settings = settings_for(settings_factory)
    stream = generate(seed=5, visitors=300)
    produce(settings, stream.events)
    log = tmp_path / "processor.log"
    process = start_processor(settings, log, processor_failpoint="hang:outputs-sent:2",
                              processor_checkpoint_timeout_s=3)
    try:
        assert process.wait(120) == 75, worker_story(process, log)
    finally:
        stop(process)
    text = log.read_text()
    assert "failpoint hang:outputs-sent:2 reached: waiting forever" in text
    assert "checkpoint failed (TimeoutError" in text
    resume_and_check(settings, log, stream, read_topic)
