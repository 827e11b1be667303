"""Processes of the dev cluster: start detached, find again by pid and start time, stop, probe.

The shell under ``components`` (which says what to run): spawning, health probes,
signals, free loopback ports and log tails, for the control plane, the node
services and each real node's processes alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ComponentSpec:
    """How to run one component and how to ask whether it is healthy."""

    name: str
    argv: tuple[str, ...]
    port: int
    health_url: str
    env: tuple[tuple[str, str], ...] = ()


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    # Hold every socket until all are chosen so the kernel cannot hand one out twice.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class RunningComponent:
    """A started process: enough to find it again, and to be sure it is still the same one."""

    name: str
    pid: int
    start_ticks: int
    port: int
    health_url: str
    log_file: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunningComponent:
        return cls(**data)

    def alive(self) -> bool:
        """True while the very process we started runs (a reused pid does not count)."""
        return process_start_ticks(self.pid) == self.start_ticks


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses; the rest follows the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def start(spec: ComponentSpec, log_file: Path) -> RunningComponent:
    """Spawn the component detached from our session, logging to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(spec.env)
    with log_file.open("ab") as log:
        # A new session: the cluster outlives `sriov-dra devcluster up` and a
        # Ctrl-C in the shell that ran it.
        proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    ticks = process_start_ticks(proc.pid)
    return RunningComponent(
        name=spec.name,
        pid=proc.pid,
        start_ticks=ticks if ticks is not None else -1,
        port=spec.port,
        health_url=spec.health_url,
        log_file=str(log_file),
    )


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(components: Iterable[RunningComponent], grace_seconds: float = 10.0) -> list[str]:
    """SIGTERM every live component, SIGKILL what is left after the grace period.

    Returns the names that needed SIGKILL.
    """
    live = [c for c in components if c.alive()]
    for c in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        for c in live:
            reap(c.pid)
        live = [c for c in live if c.alive()]
        if not live:
            return []
        time.sleep(0.1)
    killed = [c.name for c in live]
    for c in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(c.alive() for c in live):
        for c in live:
            reap(c.pid)
        time.sleep(0.05)
    return killed


def probe(url: str, context: ssl.SSLContext | None, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers 200 (etcd: with ``"health":"true"``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            body = response.read(4096).decode("utf-8", "replace")
            return bool(response.status == 200) and '"health":"false"' not in body
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
