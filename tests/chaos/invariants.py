"""What a chaos run checks: all along from a watch on ResourceClaims, and at the end.

All along (:class:`ClaimWatch`, a thread reading ``kubectl get resourceclaims -A
--watch``, restarted with a fresh list whenever the API server drops it): no device is
ever in two claims' allocations, deleted-but-not-yet-released claims included; the
first moment each claim is seen allocated.

At the end (:func:`leftovers`), once every claim of the run is deleted: every VF's
host-side state (its netdev in the node's host netns under its own name and MAC, its
VLAN, link state and saved settings) equals what it was before the run, no host-local
lease of the run's NAD remains, no pod network namespace is left, no claim is stuck on
a finalizer.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from sriov_dra.constants import DRIVER_NAME
from sriov_dra_agent.vf.backends.simulated_nic import ALIAS_PREFIX
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.deployment import DriverDeployment


def allocated_devices(claim: dict[str, Any]) -> list[tuple[str, str]]:
    """(pool, device) of each of our driver's results in the claim's allocation."""
    results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get(
        "results"
    ) or []
    return [(r["pool"], r["device"]) for r in results if r.get("driver") == DRIVER_NAME]


@dataclass
class ClaimWatch:
    """Watches every ResourceClaim; records double allocations and first allocations."""

    cluster: DevCluster
    violations: list[str] = field(default_factory=list)
    allocated_at: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0
    _claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _process: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ClaimWatch:
        self._thread = threading.Thread(target=self._run, name="claim-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.kill()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def first_allocation(self, uid: str) -> float | None:
        with self._lock:
            return self.allocated_at.get(uid)

    def _run(self) -> None:
        kubectl = str(self.cluster.bin_dir / "kubectl")
        while not self._stop.is_set():
            with self._lock:
                # The new watch starts with a list: forget what the dropped one saw.
                self._claims.clear()
            process = subprocess.Popen(
                [kubectl, f"--kubeconfig={self.cluster.kubeconfig}", "get", "resourceclaims",
                 "-A", "--watch", "--output-watch-events", "-o", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self._process = process
            assert process.stdout is not None
            fd = process.stdout.fileno()
            text = codecs.getincrementaldecoder("utf-8")()
            decoder = json.JSONDecoder()
            buffer = ""
            for chunk in iter(functools.partial(os.read, fd, 65536), b""):
                buffer += text.decode(chunk)
                while True:
                    buffer = buffer.lstrip()
                    try:
                        event, end = decoder.raw_decode(buffer)
                    except json.JSONDecodeError:
                        break
                    buffer = buffer[end:]
                    self._observe(event)
            process.wait()
            if not self._stop.is_set():
                self.reconnects += 1
                time.sleep(0.5)

    def _observe(self, event: dict[str, Any]) -> None:
        claim = event.get("object") or {}
        uid = claim.get("metadata", {}).get("uid")
        if not uid:
            return
        now = time.monotonic()
        with self._lock:
            if event.get("type") == "DELETED":
                self._claims.pop(uid, None)
            else:
                self._claims[uid] = claim
                if allocated_devices(claim):
                    self.allocated_at.setdefault(uid, now)
            holders: dict[tuple[str, str], list[str]] = {}
            for body in self._claims.values():
                meta = body["metadata"]
                for device in allocated_devices(body):
                    holders.setdefault(device, []).append(f"{meta['namespace']}/{meta['name']}")
            for (pool, name), names in holders.items():
                found = f"device {pool}/{name} in the allocations of {', '.join(sorted(names))}"
                if len(names) > 1 and found not in self.violations:
                    self.violations.append(found)


def vf_states(driver: DriverDeployment) -> dict[str, tuple[Any, ...]]:
    """Per VF (``node/pci``): its saved settings and its netdev in the node's host netns."""
    states: dict[str, tuple[Any, ...]] = {}
    for node in driver.nodes:
        nic = driver.nic(node)
        with IPRoute(netns=nic.host_ns, flags=0) as host:
            links = {
                str(link.get("IFLA_IFALIAS"))[len(ALIAS_PREFIX) :]: (
                    link.get("IFLA_IFNAME"),
                    link.get("IFLA_ADDRESS"),
                )
                for link in host.link("dump")
                if str(link.get("IFLA_IFALIAS") or "").startswith(ALIAS_PREFIX)
            }
        for marker in nic.tree.vf_markers():
            pci = marker["pci"]
            saved = tuple(sorted((k, json.dumps(v)) for k, v in marker.items()))
            states[f"{node}/{pci}"] = (saved, links.get(pci))
    return states


def pod_netns() -> set[str]:
    """The pods' network namespaces (``cni-*``) of every real node.

    The nodes share this machine's ``/var/run/netns`` directory (their mount namespaces
    are slaves of this machine's), so each pod's netns file shows here.
    """
    return {path.name for path in Path("/var/run/netns").glob("cni-*")}


def leases(driver: DriverDeployment, network: str) -> list[str]:
    """host-local leases of ``network`` left on any node."""
    left = []
    for node in driver.nodes:
        for directory in (driver.cni_data_dir(node) / "networks").glob(network):
            left += [
                f"{node}:{p.name}"
                for p in directory.iterdir()
                if not p.name.startswith(("last_reserved_ip", "lock"))
            ]
    return left


def leftovers(
    cluster: DevCluster,
    driver: DriverDeployment,
    *,
    namespace: str,
    network: str,
    vfs_before: dict[str, tuple[Any, ...]],
    netns_before: set[str],
) -> dict[str, list[str]]:
    """What the run left behind, by kind (empty: nothing)."""
    claims = cluster.kubectl_json("get", "resourceclaims", "-n", namespace)["items"]
    after = vf_states(driver)
    return {
        kind: found
        for kind, found in {
            "stuck claims": [
                f"{c['metadata']['name']} finalizers={c['metadata'].get('finalizers')}"
                for c in claims
            ],
            "VFs off their reset state": [
                f"{vf}: before {vfs_before.get(vf)} after {state}"
                for vf, state in after.items()
                if vfs_before.get(vf) != state
            ],
            "host-local leases": leases(driver, network),
            "pod netns": sorted(pod_netns() - netns_before),
        }.items()
        if found
    }
