"""Starting, watching and stopping the local stack's child processes.

Each child runs in its own process group with its output in
``.clickstream/logs/<name>.log``; it is asked to die with its parent (Linux
``PR_SET_PDEATHSIG``), so even a killed supervisor leaves no orphan. The state
file ``.clickstream/run/stack.json`` lets ``status`` and ``down`` find everything.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from clickstream.settings import Settings
from clickstream.stack.components import Component, child_env
from clickstream.stack.probes import pid_alive

log = logging.getLogger("clickstream.stack")

READY_TIMEOUT_S = 90
STOP_GRACE_S = 10
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the supervisor's own shutdown still stops its children


class StackError(RuntimeError):
    pass


@dataclass
class Child:
    component: Component
    process: subprocess.Popen
    log_path: Path
    restarts: int = 0
    last_start: float = 0.0


def state_path(settings: Settings) -> Path:
    return settings.run_dir / "stack.json"


def read_state(settings: Settings) -> dict | None:
    try:
        return json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None


def running_supervisor(settings: Settings) -> int | None:
    """The pid of a live ``clickstream up`` for this state directory, if any."""
    state = read_state(settings)
    pid = state.get("supervisor_pid") if state else None
    return pid if pid_alive(pid) else None


class Supervisor:
    def __init__(self, settings: Settings, components: list[Component]):
        self.settings = settings
        self.components = components
        self.children: dict[str, Child] = {}
        self.status = "starting"
        self._stopping = False

    # --- state file ----------------------------------------------------------
    def write_state(self) -> None:
        path = state_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor_pid": os.getpid(),
            "status": self.status,
            "components": {
                name: {
                    "pid": child.process.pid,
                    "port": child.component.port,
                    "url": child.component.url,
                    "log": str(child.log_path),
                    "restarts": child.restarts,
                }
                for name, child in self.children.items()
            },
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    # --- processes -------------------------------------------------------------
    def spawn(self, component: Component) -> Child:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.settings.logs_dir / f"{component.name}.log"
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                component.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(component),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        previous = self.children.get(component.name)
        child = Child(component, process, log_path, previous.restarts if previous else 0, time.monotonic())
        self.children[component.name] = child
        log.info("started %s (pid %d), log %s", component.name, process.pid, log_path)
        return child

    def wait_ready(self, names: list[str], timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            if self._stopping:
                raise StackError("interrupted while starting")
            for name in list(pending):
                child = self.children[name]
                if child.process.poll() is not None:
                    raise StackError(
                        f"{name} exited with code {child.process.returncode} while starting; "
                        f"see {child.log_path}:\n{tail(child.log_path)}"
                    )
                if child.component.ready():
                    log.info("%s is ready at %s", name, child.component.url)
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f} s: {', '.join(pending)}; see {self.settings.logs_dir}")
            if pending:
                time.sleep(0.3)

    def start(self, before_stage=None) -> None:
        """Start the components stage by stage, waiting for each stage to be ready.

        ``before_stage(stage)`` runs before a stage starts (e.g. topic creation before the services).
        """
        for stage in sorted({c.stage for c in self.components}):
            if before_stage is not None:
                before_stage(stage)
            batch = [c for c in self.components if c.stage == stage]
            for component in batch:
                self.spawn(component)
            self.write_state()
            self.wait_ready([c.name for c in batch])
        self.status = "ready"
        self.write_state()

    def watch(self, poll_s: float = 1.0) -> None:
        """Restart children that die, with a growing pause for one that keeps crashing, until asked to stop."""
        while not self._stopping:
            for name, child in list(self.children.items()):
                code = child.process.poll()
                if code is None or self._stopping:
                    continue
                ran_for = time.monotonic() - child.last_start
                # A child that crashed right after starting is retried more and more slowly.
                child.restarts = child.restarts + 1 if ran_for < 30 else 1
                pause = min(30.0, 2.0 ** min(child.restarts, 5) / 2)
                log.warning("%s exited with code %s after %.0f s; restarting in %.0f s", name, code, ran_for, pause)
                self._sleep(pause)
                if not self._stopping:
                    self.spawn(child.component)
                    self.write_state()
            self._sleep(poll_s)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

    def request_stop(self, *_args) -> None:
        self._stopping = True

    def stop(self) -> None:
        """Stop children in reverse start order: SIGTERM to each process group, then SIGKILL."""
        self._stopping = True
        self.status = "stopping"
        for name in reversed(list(self.children)):
            stop_process_group(self.children[name].process.pid, name)
        self.status = "stopped"
        try:
            state_path(self.settings).unlink()
        except FileNotFoundError:
            pass


def stop_process_group(pid: int, name: str, grace_s: float = STOP_GRACE_S) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                log.info("stopped %s", name)
                return
            time.sleep(0.1)
    log.error("could not stop %s (pid %d)", name, pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
