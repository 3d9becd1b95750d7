"""``clickstream up``, ``status`` and ``down``: the local stack as a user drives it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from clickstream.kafka import create_topics
from clickstream.settings import Settings
from clickstream.sources import demo_write_key
from clickstream.stack.components import SERVICES_STAGE, Component, stack_components
from clickstream.stack.probes import pid_alive, tcp_open
from clickstream.stack.supervisor import (
    READY_TIMEOUT_S,
    StackError,
    Supervisor,
    read_state,
    running_supervisor,
    stop_process_group,
    tail,
)

log = logging.getLogger("clickstream.stack")


def _ports_in_use(settings: Settings, components: list[Component]) -> list[str]:
    return [f"{c.name} port {c.port}" for c in components if tcp_open(settings.host, c.port, timeout=0.3)]


def banner(settings: Settings, components: dict[str, dict]) -> str:
    lines = ["clickstream is running:"]
    labels = {
        "api": "API",
        "dashboard": "dashboard",
        "s3": "S3",
        "broker": "broker",
    }
    for name, label in labels.items():
        if name in components:
            lines.append(f"  {label:<10} {components[name]['url']}")
    if "s3" not in components:
        lines.append(f"  {'S3':<10} {settings.s3_endpoint_url} (external)")
    if "broker" not in components:
        lines.append(f"  {'broker':<10} kafka://{settings.bootstrap_servers} (external)")
    lines.append(f"  lake       {settings.lake_root}")
    lines.append(f"  write key  {demo_write_key(settings)}  (source '{settings.demo_source}')")
    lines.append(f"  logs       {settings.logs_dir}/")
    return "\n".join(lines)


def up_foreground(settings: Settings) -> int:
    """Start every component, print where they are, and supervise them until Ctrl-C or SIGTERM."""
    components = stack_components(settings)
    busy = _ports_in_use(settings, components)
    if busy:
        print(f"cannot start: {', '.join(busy)} already in use by another program "
              "(set CLICKSTREAM_<NAME>_PORT to move it)", file=sys.stderr)
        return 1
    supervisor = Supervisor(settings, components)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)

    def before_stage(stage: int) -> None:
        if stage == SERVICES_STAGE:
            asyncio.run(create_topics(settings))

    try:
        supervisor.start(before_stage=before_stage)
        print(banner(settings, read_state(settings)["components"]), flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        supervisor.watch()
        return 0
    except StackError as exc:
        print(f"clickstream up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        supervisor.stop()
        print("clickstream stopped.", flush=True)


def up_detached(settings: Settings) -> int:
    """Run ``clickstream up`` in the background and return once it is ready (or failed)."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    stack_log = settings.logs_dir / "stack.log"
    with open(stack_log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clickstream", "up"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S * 3
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(f"clickstream up failed; see {stack_log}:\n{tail(stack_log)}", file=sys.stderr)
            return 1
        state = read_state(settings)
        if state and state.get("supervisor_pid") == process.pid and state.get("status") == "ready":
            print(banner(settings, state["components"]))
            print("Running in the background: `clickstream status`, `clickstream down`.")
            return 0
        time.sleep(0.5)
    print(f"clickstream up is not ready after {READY_TIMEOUT_S * 3} s; see {stack_log}", file=sys.stderr)
    return 1


def up(settings: Settings, *, detach: bool) -> int:
    pid = running_supervisor(settings)
    if pid:
        print(f"clickstream is already running (pid {pid}); `clickstream status` shows it, `clickstream down` stops it.")
        return 0
    return up_detached(settings) if detach else up_foreground(settings)


def component_status(settings: Settings) -> dict:
    """Each component's pid, port, URL and whether it is up (its process alive and its port answering)."""
    state = read_state(settings) or {}
    supervisor_pid = state.get("supervisor_pid")
    running = pid_alive(supervisor_pid)
    components = {}
    for name, info in (state.get("components") or {}).items():
        alive = running and pid_alive(info["pid"])
        listening = alive and tcp_open(settings.host, info["port"], timeout=0.5)
        components[name] = {**info, "state": "up" if listening else "down"}
    return {
        "running": running,
        "supervisor_pid": supervisor_pid if running else None,
        "status": state.get("status") if running else "stopped",
        "components": components,
    }


def format_status(status: dict) -> str:
    if not status["running"]:
        return "clickstream is not running (start it with `clickstream up`)."
    lines = [f"clickstream {status['status']} (supervisor pid {status['supervisor_pid']})"]
    lines.append(f"  {'component':<10} {'state':<6} {'pid':>7}  {'port':>5}  url")
    for name, c in status["components"].items():
        lines.append(f"  {name:<10} {c['state']:<6} {c['pid']:>7}  {c['port']:>5}  {c['url']}")
    return "\n".join(lines)


def down(settings: Settings, timeout_s: float = 60) -> int:
    state = read_state(settings)
    pid = running_supervisor(settings)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is left (a supervisor that was SIGKILLed, or one that did not finish) is stopped here.
    for name, info in ((state or {}).get("components") or {}).items():
        if pid_alive(info["pid"]):
            stop_process_group(info["pid"], name)
    if state is None and pid is None:
        print("clickstream is not running.")
        return 0
    try:
        (settings.run_dir / "stack.json").unlink()
    except FileNotFoundError:
        pass
    print("clickstream stopped.")
    return 0
