"""The node emulation's per-node state: claims prepared and pods running, checkpointed.

A restarted emulator reads its checkpoint and adopts running sandboxes; after
the emulator stopped for good, ``sweep`` removes what the checkpoint says is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sriov_dra.claim_ref import ClaimRef

from sriov_dra_devcluster import pod_sandbox
from sriov_dra_devcluster.emulated_pod import SandboxFailed
from sriov_dra_devcluster.kubelet_plugins import (
    PluginWatcher,
    PreparedDevice,
    device_from_json,
    device_to_json,
)
from sriov_dra_devcluster.node_layout import NodeLayout

CHECKPOINT: Final = "checkpoint.json"
PODNET_NETNS: Final = "sriov-dra-podnet"

# --- per-node state, checkpointed --------------------------------------------------------


@dataclass
class ClaimRecord:
    """A claim prepared on this node, and the pods on this node that use it."""

    ref: ClaimRef
    devices: dict[str, list[PreparedDevice]]
    """driver -> devices NodePrepareResources returned."""
    pods: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "uid": self.ref.uid,
            "devices": {d: [device_to_json(x) for x in v] for d, v in self.devices.items()},
            "pods": sorted(self.pods),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClaimRecord:
        return cls(
            ClaimRef(data["namespace"], data["name"], data["uid"]),
            {d: [device_from_json(x) for x in v] for d, v in data["devices"].items()},
            set(data.get("pods", [])),
        )


@dataclass
class PodRecord:
    """What the emulation holds for one pod: its sandbox, claims and started containers."""

    namespace: str
    name: str
    uid: str
    claims: dict[str, str] = field(default_factory=dict)
    """pod claim name -> claim UID (prepared)."""
    sandbox: pod_sandbox.Sandbox | None = None
    containers: dict[str, str] = field(default_factory=dict)
    """container name -> emulated container ID, once its hooks ran."""
    reported_running: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "claims": self.claims,
            "sandbox": self.sandbox.to_json() if self.sandbox else None,
            "containers": self.containers,
            "reportedRunning": self.reported_running,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PodRecord:
        sandbox = data.get("sandbox")
        return cls(
            data["namespace"],
            data["name"],
            data["uid"],
            dict(data.get("claims", {})),
            pod_sandbox.Sandbox.from_json(sandbox) if sandbox else None,
            dict(data.get("containers", {})),
            bool(data.get("reportedRunning", False)),
        )


@dataclass
class NodeState:
    """One simulated node: directories, plugin watcher, pods and prepared claims."""

    layout: NodeLayout
    pod_subnet: ipaddress.IPv4Network
    pods: dict[str, PodRecord] = field(default_factory=dict)
    claims: dict[str, ClaimRecord] = field(default_factory=dict)
    host_ip: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.plugins = PluginWatcher(self.layout.registrar_dir)

    @property
    def checkpoint(self) -> Path:
        return self.layout.emulator_dir / CHECKPOINT

    def load(self) -> None:
        try:
            data = json.loads(self.checkpoint.read_text())
        except FileNotFoundError:
            return
        self.pods = {uid: PodRecord.from_json(p) for uid, p in data.get("pods", {}).items()}
        self.claims = {uid: ClaimRecord.from_json(c) for uid, c in data.get("claims", {}).items()}

    def save(self) -> None:
        self.layout.emulator_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "node": self.layout.node,
            "pods": {uid: p.to_json() for uid, p in self.pods.items()},
            "claims": {uid: c.to_json() for uid, c in self.claims.items()},
        }
        tmp = self.checkpoint.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.checkpoint)

    def free_pod_ip(self) -> str:
        used = {p.sandbox.pod_ip for p in self.pods.values() if p.sandbox}
        for host in self.pod_subnet.hosts():
            if host == next(self.pod_subnet.hosts()):
                continue  # .1 plays the node's bridge address
            if str(host) not in used:
                return str(host)
        raise SandboxFailed(f"no free fake pod IP left in {self.pod_subnet} on {self.layout.node}")

    def bundle_dir(self, container_id: str) -> Path:
        return self.layout.emulator_dir / "bundles" / container_id


def podnet_name(root: Path, prefix: str = "") -> str:
    """The isolated netns holding the peers of the fake eth0s, one per node root."""
    return f"{prefix}{PODNET_NETNS}-{root.name}"


def checkpointed_pods(layout: NodeLayout) -> dict[str, dict[str, Any]]:
    """The emulator's checkpointed pods of one node (uid -> record JSON)."""
    try:
        data = json.loads((layout.emulator_dir / CHECKPOINT).read_text())
    except FileNotFoundError:
        return {}
    pods: dict[str, dict[str, Any]] = data.get("pods", {})
    return pods


def sweep(layouts: Iterable[NodeLayout], *, netns_prefix: str = "") -> list[str]:
    """Remove what a stopped emulator left (processes, pod netns, the podnet netns).

    Used after the emulator stopped for good (dev-cluster teardown); it does
    not unprepare claims, since the agents are stopped too. Returns what it removed.
    """
    removed = []
    for layout in layouts:
        for record in checkpointed_pods(layout).values():
            sandbox = record.get("sandbox")
            if not sandbox:
                continue
            box = pod_sandbox.Sandbox.from_json(sandbox)
            if box.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(box.pid, signal.SIGKILL)
                removed.append(f"process {box.pid}")
            if pod_sandbox.netns_exists(box.netns):
                subprocess.run(["ip", "netns", "delete", box.netns], check=False)
                removed.append(f"netns {box.netns}")
        with contextlib.suppress(FileNotFoundError):
            (layout.emulator_dir / CHECKPOINT).unlink()
        shutil.rmtree(layout.emulator_dir / "bundles", ignore_errors=True)
    podnets = {podnet_name(layout.root, netns_prefix) for layout in layouts}
    for podnet in sorted(podnets):
        if pod_sandbox.netns_exists(podnet):
            subprocess.run(["ip", "netns", "delete", podnet], check=False)
            removed.append(f"netns {podnet}")
    return removed
