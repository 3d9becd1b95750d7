"""The whole path through every layer, started the way a user starts it (`clickstream up --detach`),
here against the session's broker and S3 server as external services:

POST -> Kafka -> Faust (sessions, page-view windows) -> reaction -> reactor -> test webhook,
and Kafka -> sink -> Parquet on S3 -> DuckDB (`clickstream query`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from clickstream.stack.probes import pid_alive
from webhook import Webhook

pytestmark = pytest.mark.integration

SECRET = "e2e-secret"  # the reactor signs webhook bodies with it; the receiver checks every one


def clickstream(*args, env, cwd, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_post_to_reaction_and_lake(settings_factory, free_ports, tmp_path):
    webhook = Webhook(SECRET)
    settings = settings_factory(
        api_port=free_ports(), dashboard_port=free_ports(), processor_port=free_ports(),
        reactor_port=free_ports(), sink_port=free_ports(),
        page_view_threshold=5, flush_interval_s=1, webhook_url=webhook.url, webhook_secret=SECRET,
        lateness_s=5, idle_timeout_s=3, windows_s=[10], session_timeout_s=5,
        state_dir=tmp_path / ".clickstream",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    started = clickstream("up", "--detach", env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert "write key" in started.stdout and settings.demo_write_key in started.stdout
        status = json.loads(clickstream("status", "--json", env=env, cwd=tmp_path).stdout)
        assert {n: c["state"] for n, c in status["components"].items()} == {
            n: "up" for n in ("sink", "processor", "reactor", "api", "dashboard")
        }
        assert clickstream("up", env=env, cwd=tmp_path).stdout.startswith("clickstream is already running")

        # Five page views of /pricing in one 10-second window (the threshold), two of /, one track
        # call, all at one time in the previous minute: after the idle timeout the watermark moves on
        # from there and the window closes within seconds.
        minute = (datetime.now(timezone.utc) - timedelta(minutes=1)).replace(second=1, microsecond=0).isoformat()
        api = settings.url(settings.api_port)
        auth = (settings.demo_write_key, "")
        bodies = [("page", {"anonymousId": f"v{i}", "name": "Pricing", "timestamp": minute,
                            "properties": {"path": "/pricing"}}) for i in range(5)]
        bodies += [("page", {"anonymousId": "v1", "name": "Home", "timestamp": minute, "properties": {"path": "/"}}),
                   ("page", {"anonymousId": "v9", "name": "Home", "timestamp": minute, "properties": {"path": "/"}}),
                   ("track", {"anonymousId": "v1", "event": "Signed Up", "timestamp": minute})]
        ids = []
        for kind, body in bodies:
            r = httpx.post(f"{api}/v1/{kind}", json=body, auth=auth, timeout=10)
            assert r.status_code == 200, r.text
            ids.append(r.json()["event_id"])
        assert httpx.post(f"{api}/v1/page", content=b"{oops", auth=auth).status_code == 400
        # An SDK retrying a delivery sends the same messageId twice: the lake keeps it once.
        retried = {"anonymousId": "v1", "event": "Retried", "messageId": "dup-1", "timestamp": minute}
        for _ in range(2):
            assert httpx.post(f"{api}/v1/track", json=retried, auth=auth, timeout=10).status_code == 200
        ids.append("dup-1")

        reactions = wait_for(lambda: webhook.received, 90, "the reaction at the webhook")
        time.sleep(2)  # a second delivery would be a defect: give it the chance to show
        assert len(webhook.received) == 1 and webhook.unsigned == []
        key, reaction = reactions[0]
        assert reaction["subject"] == "demo:page_views:path=/pricing" and reaction["value"] == 5 and reaction["threshold"] == 5
        assert key == reaction["reaction_id"]

        def lake():
            q = clickstream("query", "select event_id, session_id, anonymous_id from events", "--format", "json",
                            env=env, cwd=tmp_path, timeout=60)
            assert q.returncode == 0, q.stderr
            rows = json.loads(q.stdout)
            return rows if len(rows) >= len(ids) else None

        rows = wait_for(lake, 90, "the events in the lake")
        assert sorted(r["event_id"] for r in rows) == sorted(ids)
        sessions = {}
        for r in rows:
            assert r["session_id"], r
            sessions.setdefault(r["anonymous_id"], set()).add(r["session_id"])
        # v1 sent three events within the session timeout: one session.
        assert len(sessions["v1"]) == 1 and len(sessions) == 6
        count = clickstream("query", "select count(*) as n from events", env=env, cwd=tmp_path)
        assert "| 9 " in count.stdout

        # The rejected POST and the fired reaction are in their tables too.
        def table(sql):
            q = clickstream("query", sql, "--format", "json", env=env, cwd=tmp_path, timeout=60)
            return json.loads(q.stdout) if q.returncode == 0 else None

        invalid = wait_for(lambda: table("select reason, payload, source from invalid_events"), 60, "invalid_events")
        assert len(invalid) == 1 and "malformed JSON" in invalid[0]["reason"] and invalid[0]["payload"] == "{oops"
        stored = wait_for(lambda: table("select reaction_id, value from reactions"), 60, "the reactions table")
        assert stored == [{"reaction_id": reaction["reaction_id"], "value": 5.0}]
        # Sessions close after the (here 5 s) timeout of quiet; their records and the window's metrics
        # land in their tables with the same ids as the events.
        closed = wait_for(lambda: (t := table("select session_id, anonymous_id, event_count, page_views, is_bounce"
                                              " from sessions order by anonymous_id")) and len(t) == 6 and t,
                          90, "the sessions table")
        assert {r["anonymous_id"]: r["session_id"] for r in closed} == {a: s.pop() for a, s in sessions.items()}
        assert next(r for r in closed if r["anonymous_id"] == "v1")["event_count"] == 4
        views = wait_for(lambda: table("select sum(value) as n from metrics where metric = 'page_views'"
                                       " and dimension = '' and window_s = 10"), 60, "the metrics table")
        assert views == [{"n": 7.0}]

        dashboard = httpx.get(settings.url(settings.dashboard_port) + "/_stcore/health", timeout=10)
        assert dashboard.status_code == 200
    finally:
        stopped = clickstream("down", env=env, cwd=tmp_path)
        webhook.close()
    assert stopped.returncode == 0, stopped.stderr
    pids = [c["pid"] for c in status["components"].values()] + [status["supervisor_pid"]]
    assert not [p for p in pids if pid_alive(p)], "processes left behind after `clickstream down`"
    assert json.loads(clickstream("status", "--json", env=env, cwd=tmp_path).stdout)["running"] is False
