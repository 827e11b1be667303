"""A pod sandbox, emulated with real kernel objects: a named netns with a process in it.

A container runtime gives every pod a network namespace held open by the
sandbox ("pause") process; the CDI hook finds that namespace through the
process's host PID. Here the namespace is a named netns
(``/var/run/netns/pod-<namespace>-<name>``, so ``ip netns exec`` can look
inside) and the process is ``sleep infinity`` entered into it with ``nsenter``,
renamed so ``ps`` shows which pod it plays.

``eth0`` is NOT a pod network: no CNI runs for the cluster network here. The
emulation adds a veth ``eth0`` whose peer sits in an isolated "podnet"
namespace, holding the made-up pod IP it reports in ``status.podIP``, with the
link alias saying so. It connects nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

NETNS_DIR: Final = Path("/var/run/netns")
FAKE_ETH0_ALIAS: Final = "sriov-dra node emulation: fake eth0, NOT a real pod network"
_NETNS_NAME_MAX: Final = 200
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")


class SandboxError(Exception):
    """Creating or removing a sandbox failed; the message says which command and why."""


def pod_netns_name(namespace: str, name: str, prefix: str = "") -> str:
    """``<prefix>pod-<namespace>-<name>``; long names are shortened with a hash suffix."""
    full = _UNSAFE.sub("_", f"{prefix}pod-{namespace}-{name}")
    if len(full) <= _NETNS_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[: _NETNS_NAME_MAX - 11]}-{digest}"


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if the pid is gone.

    Together with the pid it identifies a process across pid reuse.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command may contain spaces and parentheses; fields follow the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


@dataclass(frozen=True)
class Sandbox:
    """What identifies a running sandbox: its netns, its process and the fake pod IP."""

    netns: str
    pid: int
    start_time: int
    pod_ip: str
    peer: str

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time

    def to_json(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "pid": self.pid,
            "startTime": self.start_time,
            "podIP": self.pod_ip,
            "peer": self.peer,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sandbox:
        return cls(data["netns"], data["pid"], data["startTime"], data["podIP"], data["peer"])


async def _ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(f"ip {shlex.join(args)}: {stderr.decode().strip()}")


async def ensure_netns(name: str) -> None:
    """Create the named netns with loopback up, unless it exists."""
    if not netns_exists(name):
        await _ip("netns", "add", name)
    await _ip("-n", name, "link", "set", "lo", "up")


async def remove_netns(name: str) -> None:
    """Delete the named netns (no error when it is already gone)."""
    if netns_exists(name):
        await _ip("netns", "delete", name)


async def create(
    netns: str, *, podnet: str, peer: str, pod_ip: str, prefix_len: int, title: str
) -> tuple[Sandbox, asyncio.subprocess.Process]:
    """Make the netns, the fake eth0 and the sandbox process; undo all of it on failure."""
    await ensure_netns(netns)
    try:
        await _ip("link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", peer,
                  "netns", podnet)  # fmt: skip
        await _ip("-n", netns, "link", "set", "eth0", "alias", FAKE_ETH0_ALIAS)
        await _ip("-n", netns, "addr", "add", f"{pod_ip}/{prefix_len}", "dev", "eth0")
        await _ip("-n", podnet, "link", "set", peer, "up")
        await _ip("-n", netns, "link", "set", "eth0", "up")
        await _wait_operstate_up(netns, "eth0")
        proc = await asyncio.create_subprocess_exec(
            "nsenter",
            f"--net={netns_path(netns)}",
            "--",
            "bash",
            "-c",
            f"exec -a {shlex.quote(title)} sleep infinity",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Its own session: signals to the emulator's process group do not reach pods.
            start_new_session=True,
        )
        start_time = await _wait_in_netns(proc.pid, netns)
    except BaseException:
        await remove_netns(netns)
        raise
    return Sandbox(netns, proc.pid, start_time, pod_ip, peer), proc


async def _wait_operstate_up(netns: str, link: str, limit: float = 3.0) -> None:
    """Give the kernel's link watcher (which lags up to a second) time to report carrier.

    Cosmetic: ``ip link`` in a fresh pod would otherwise show the fake eth0 as
    NO-CARRIER. A link still down after ``limit`` seconds is left as it is.
    """
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        proc = await asyncio.create_subprocess_exec(
            "ip", "-n", netns, "-j", "link", "show", link,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        stdout, _ = await proc.communicate()
        with contextlib.suppress(ValueError, IndexError, KeyError):
            if json.loads(stdout)[0]["operstate"] == "UP":
                return
        await asyncio.sleep(0.05)


async def _wait_in_netns(pid: int, netns: str) -> int:
    """Wait until ``pid`` has entered ``netns`` (nsenter has exec'd); its start time."""
    target = os.stat(netns_path(netns)).st_ino
    for _ in range(200):
        start_time = process_start_time(pid)
        if start_time is None:
            raise SandboxError(f"sandbox process {pid} for netns {netns} exited at start")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == target:
                return start_time
        await asyncio.sleep(0.01)
    raise SandboxError(f"sandbox process {pid} did not enter netns {netns}")


async def stop_process(
    sandbox: Sandbox, proc: asyncio.subprocess.Process | None, grace: float = 5.0
) -> None:
    """SIGTERM the sandbox process, SIGKILL after ``grace`` seconds; reap it if it is ours."""
    if not sandbox.alive():
        if proc is not None:
            await proc.wait()
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(sandbox.pid, sig)
        if proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), wait)
                return
        else:
            for _ in range(int(wait * 20)):
                if not sandbox.alive():
                    return
                await asyncio.sleep(0.05)
    if sandbox.alive():
        raise SandboxError(f"sandbox process {sandbox.pid} ({sandbox.netns}) did not exit")
