"""Readiness probes and small process helpers used by the launcher and the test fixtures."""

from __future__ import annotations

import os
import random
import socket
import urllib.error
import urllib.request


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ephemeral_port_low(default: int = 32768) -> int:
    """The lowest port the kernel hands out as the local end of an outgoing connection."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port_pair(offset: int, host: str = "127.0.0.1", low: int = 10000, high: int | None = None) -> int:
    """A port ``p`` such that ``p`` and ``p + offset`` are both free (SeaweedFS's gRPC convention).

    Both stay below the kernel's ephemeral range by default. A port in that range can be taken in
    the meantime as the local end of any outgoing connection: SeaweedFS's own components connect to
    each other while it still starts its last ones, which then failed with "address already in use"."""
    if high is None:
        high = max(low + 1000, ephemeral_port_low() - 1 - offset)
    for _ in range(200):
        port = random.randint(low, high)
        if _bindable(host, port) and _bindable(host, port + offset):
            return port
    raise OSError(f"no free port pair (+{offset}) between {low} and {high}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False
