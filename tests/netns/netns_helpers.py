"""Helpers for the netns tests: a pod process, NAD configs, host-local state."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Pod:
    """A process living in its own netns, as a pod sandbox."""

    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def netns(self) -> str:
        return f"/proc/{self.proc.pid}/ns/net"

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the pod's netns."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", *cmd],
            capture_output=True,
            text=True,
            check=check,
        )

    def links(self) -> list[str]:
        out = self.run("ip", "-o", "link", "show").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def netconf(
    data_dir: Path, *, name: str = "net-a", start: str = "10.9.0.5", end: str = "10.9.0.9"
) -> dict[str, Any]:
    """A sriov NAD config whose host-local state lives in ``data_dir``."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "sriov",
        "vlan": 100,
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [
                [
                    {
                        "subnet": "10.9.0.0/24",
                        "rangeStart": start,
                        "rangeEnd": end,
                        "gateway": "10.9.0.1",
                    }
                ]
            ],
            "routes": [{"dst": "10.10.0.0/16"}],
        },
    }


def held_ips(data_dir: Path, name: str = "net-a") -> dict[str, str]:
    """host-local's allocations: IP -> "<container id>/<ifname>"."""
    net = data_dir / name
    if not net.is_dir():
        return {}
    out = {}
    for entry in net.iterdir():
        if entry.name[0].isdigit():
            container, _, ifname = entry.read_bytes().decode().partition("\r\n")
            out[entry.name] = f"{container}/{ifname}"
    return out
