"""Helpers for the operator's integration tests and benchmark: the operator as a
real process, simulated VFs as real ResourceSlices, claims and their Events.

The test plays the node agent: it publishes ResourceSlices for the simulated
nodes and reports a deleted claim's VF released (condition Released in
``status.devices``, as the agent writes it) when it is "detached".
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from sriov_dra.constants import (
    ATTR_PCI_ADDRESS,
    ATTR_PF_NAME,
    ATTR_PF_PCI_ADDRESS,
    ATTR_VF_ID,
    DRIVER_NAME,
    PREFIX,
    VFCONFIG_API_VERSION,
    VFCONFIG_KIND,
)
from sriov_dra.naming import device_name
from sriov_dra_agent.cluster.device_status import released_entries
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TEST_GROUP_ATTR = f"{PREFIX}/testGroup"
"""Attribute tying simulated VFs to one test, so tests' DeviceClasses never share VFs."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """``sriov-dra operator`` as a child process with its own log file."""

    def __init__(self, kubeconfig: Path, log_path: Path, *extra: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra = extra
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60, until: str = "state listed") -> OperatorProcess:
        """Start and wait for the log line ``until`` (default: the state is listed, workers run)."""
        command = [
            str(Path(sys.executable).parent / "sriov-dra"),
            "operator",
            f"--kubeconfig={self.kubeconfig}",
            f"--metrics-port={self.metrics_port}",
            f"--health-port={self.health_port}",
            "--bind-address=127.0.0.1",
            *self.extra,
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f'"message": "{until}"'.encode() in f.read()

        wait_until(ready, timeout=timeout, what=f"the operator's log line {until!r}")
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The end of the operator's log."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def healthz(self) -> int:
        """HTTP status of the liveness endpoint."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a node failure."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def unit_tables(module: str) -> ModuleType:
    """A module of tests/unit (its bad-input tables), imported as pytest imports it."""
    unit = str(ROOT / "tests" / "unit")
    if unit not in sys.path:
        sys.path.append(unit)
    return importlib.import_module(module)


def failures_by_reason(metrics: str) -> dict[str, float]:
    """``sriov_dra_operator_allocation_failures_total`` per reason, from /metrics text."""
    pattern = re.compile(
        r'^sriov_dra_operator_allocation_failures_total\{reason="([^"]*)"\} (\S+)$', re.M
    )
    return {reason: float(value) for reason, value in pattern.findall(metrics)}


def ensure_crds_and_class(cluster: DevCluster) -> None:
    """The NAD CRD and the project's DeviceClass, as a deployment installs them."""
    cluster.kubectl("apply", "-f", str(ROOT / "crds" / "network-attachment-definition.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    )  # fmt: skip
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "deviceclass.yaml"))


def vf_pci(pf: int, vf: int, group: int = 0) -> str:
    """A simulated VF's PCI address: one bus per (group, PF)."""
    return f"0000:{(0x10 + group * 8 + pf) % 256:02x}:{vf // 8:02x}.{vf % 8}"


def slice_manifest(
    name: str, node: str, pool: str, group: str, vfs: int, *, pfs: int = 1, bus_group: int = 0
) -> dict[str, Any]:
    """A ResourceSlice publishing ``pfs`` x ``vfs`` simulated VFs of ``node``."""
    devices = []
    for pf in range(pfs):
        for vf in range(vfs):
            pci = vf_pci(pf, vf, bus_group)
            devices.append(
                {
                    "name": device_name(pci),
                    "attributes": {
                        ATTR_PCI_ADDRESS: {"string": pci},
                        ATTR_PF_NAME: {"string": f"simpf{pf}"},
                        ATTR_PF_PCI_ADDRESS: {"string": vf_pci(pf, 0, bus_group)[:-1] + "0"},
                        ATTR_VF_ID: {"int": vf},
                        TEST_GROUP_ATTR: {"string": group},
                    },
                }
            )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name, "labels": {"sriov-dra-test-group": group}},
        "spec": {
            "driver": DRIVER_NAME,
            "nodeName": node,
            "pool": {"name": pool, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def device_class_manifest(name: str, group: str) -> dict[str, Any]:
    """A DeviceClass of our driver that selects only one test's VFs."""
    expression = (
        f"device.driver == '{DRIVER_NAME}' && device.attributes['{PREFIX}'].testGroup == '{group}'"
    )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name, "labels": {"sriov-dra-test-group": group}},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def vfconfig(**fields: Any) -> dict[str, Any]:
    """Opaque VfConfig parameters."""
    return {"apiVersion": VFCONFIG_API_VERSION, "kind": VFCONFIG_KIND, **fields}


def claim_manifest(
    name: str, namespace: str, device_class: str, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A static claim for one VF, with an opaque VfConfig when given."""
    devices: dict[str, Any] = {
        "requests": [{"name": "vf", "exactly": {"deviceClassName": device_class}}]
    }
    if parameters is not None:
        devices["config"] = [
            {"requests": ["vf"], "opaque": {"driver": DRIVER_NAME, "parameters": parameters}}
        ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": devices},
    }


def nad_manifest(name: str, namespace: str, config: dict[str, Any] | str) -> dict[str, Any]:
    """A NetworkAttachmentDefinition with ``config`` as its CNI config."""
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": config if isinstance(config, str) else json.dumps(config)},
    }


def sriov_conf(name: str, **fields: Any) -> dict[str, Any]:
    """A valid sriov CNI config with host-local IPAM, plus ``fields``."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "sriov",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.3.0/24"}]]},
        **fields,
    }


def apply(cluster: DevCluster, *objects: dict[str, Any]) -> None:
    """``kubectl apply`` all objects in one request stream."""
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(items), timeout=120)


def create(cluster: DevCluster, *objects: dict[str, Any]) -> None:
    """``kubectl create`` all objects at once."""
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("create", "-f", "-", input=json.dumps(items), timeout=120)


def create_unchecked(cluster: DevCluster, *objects: dict[str, Any]) -> str:
    """Send all objects in one ``kubectl create``, leaving validation to the apiserver.

    Returns kubectl's stderr: the apiserver's refusal of each object it refused
    (the others are created).
    """
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    result = cluster.kubectl(
        "create", "--validate=false", "-f", "-", input=json.dumps(items), timeout=120, check=False
    )
    return result.stderr


def claims(cluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    """All claims of ``namespace``."""
    return list(cluster.kubectl_json("get", "resourceclaims", "-n", namespace)["items"])


def claim(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any] | None:
    """One claim, None when it does not exist."""
    result = cluster.kubectl(
        "get", "resourceclaim", name, "-n", namespace, "-o", "json", check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def allocated_devices(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(driver, pool, device) of every result of a claim's allocation."""
    allocation = (body.get("status") or {}).get("allocation") or {}
    return [
        (r["driver"], r["pool"], r["device"])
        for r in (allocation.get("devices") or {}).get("results") or []
    ]


def events_for(cluster: DevCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events whose involvedObject is claim ``name``."""
    items = cluster.kubectl_json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={name},involvedObject.kind=ResourceClaim",
    )["items"]  # fmt: skip
    return list(items)


def wait_for_event(
    cluster: DevCluster, namespace: str, name: str, reason: str, timeout: float = 30
) -> dict[str, Any]:
    """The first Event with ``reason`` on claim ``name``."""

    def probe() -> dict[str, Any] | None:
        for event in events_for(cluster, namespace, name):
            if event.get("reason") == reason:
                return event
        return None

    return wait_until(probe, timeout=timeout, what=f"{reason} Event on {namespace}/{name}")


def expect_event(
    cluster: DevCluster, namespace: str, name: str, reason: str, *, warning: bool, message: str
) -> None:
    """Claim ``name`` gets an Event with ``reason`` of the given type and exactly ``message``."""
    event = wait_for_event(cluster, namespace, name, reason)
    said = (event["type"], event["message"])
    assert said == ("Warning" if warning else "Normal", message), f"{name} was told {said}"


def wait_allocated(
    cluster: DevCluster, namespace: str, name: str, timeout: float = 30
) -> dict[str, Any]:
    """The claim once ``status.allocation`` is set."""

    def probe() -> dict[str, Any] | None:
        body = claim(cluster, namespace, name)
        return body if body and allocated_devices(body) else None

    return wait_until(probe, timeout=timeout, what=f"allocation of {namespace}/{name}")


def release_patch(body: dict[str, Any]) -> dict[str, Any]:
    """Merge patch of ``status``: the agent's entries saying each allocated VF is released
    (our pools are named after their node)."""
    results = body["status"]["allocation"]["devices"]["results"]
    ours = [r for r in results if r["driver"] == DRIVER_NAME]
    entries = released_entries(body, ours, driver=DRIVER_NAME, node=ours[0]["pool"])
    return {"status": {"devices": entries}}


def release(
    cluster: DevCluster, namespace: str, body: dict[str, Any], *, check: bool = True
) -> None:
    """Play the node agent: report the claim's VFs detached and reset."""
    if not allocated_devices(body):
        return
    cluster.kubectl(
        "patch", "resourceclaim", body["metadata"]["name"], "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps(release_patch(body)),
        check=check,
    )  # fmt: skip


def release_all(cluster: DevCluster, namespace: str) -> None:
    """Release and delete every claim of ``namespace``; wait until the operator let them go."""
    for body in claims(cluster, namespace):
        release(cluster, namespace, body)
    cluster.kubectl(
        "delete", "resourceclaims", "--all", "-n", namespace, "--wait=false", check=False
    )

    def gone() -> bool:
        left = claims(cluster, namespace)
        # A waiting claim may get a VF freed by this very clean-up before its own deletion
        # reaches the operator; then it too waits for its agent: play the agent again.
        for body in left:
            release(cluster, namespace, body, check=False)
        return not left

    wait_until(gone, timeout=60, interval=1.0, what=f"claims of {namespace} gone")


def conflict_events(cluster: DevCluster, namespace: str) -> list[str]:
    """Messages of AllocationConflict Events in ``namespace``."""
    events = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
    return [e["message"] for e in events if e.get("reason") == "AllocationConflict"]


@contextlib.contextmanager
def simulated_vfs(
    cluster: DevCluster,
    group: str,
    per_node: int,
    *,
    pfs: int = 1,
    nodes: list[str] | None = None,
) -> Iterator[str]:
    """Slices with ``per_node`` VFs on each sim node (or ``nodes``) and a DeviceClass for them only.

    Yields the DeviceClass name; both are deleted afterwards.
    """
    objects: list[dict[str, Any]] = [device_class_manifest(group, group)]
    for index, node in enumerate(nodes or cluster.node_names):
        objects.append(
            slice_manifest(
                f"{group}-{node}", node, f"{node}.{group}", group, per_node,
                pfs=pfs, bus_group=index,
            )
        )  # fmt: skip
    apply(cluster, *objects)
    try:
        yield group
    finally:
        cluster.kubectl(
            "delete", "resourceslices,deviceclasses", "-l", f"sriov-dra-test-group={group}",
            "--wait=false", check=False,
        )  # fmt: skip


def load_seed(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The seed example's NAD and claim, moved into ``namespace`` (no Namespace, no Pod)."""
    docs = list(yaml.safe_load_all((ROOT / "manifests/examples/resourceclaim-vf.yaml").read_text()))
    nad = next(d for d in docs if d["kind"] == "NetworkAttachmentDefinition")
    claim_ = next(d for d in docs if d["kind"] == "ResourceClaim")
    for doc in (nad, claim_):
        doc["metadata"]["namespace"] = namespace
    return nad, claim_


def operator_kubeconfig(cluster: DevCluster) -> Path:
    """CRDs, DeviceClass, and the operator's ServiceAccount bound to manifests/rbac-operator."""
    ensure_crds_and_class(cluster)
    for manifest in ("namespace.yaml", "serviceaccounts.yaml"):
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / manifest))
    docs = list(
        yaml.safe_load_all((ROOT / "manifests" / "base" / "rbac-operator.yaml").read_text())
    )
    apply(cluster, *[d for d in docs if d])
    return cluster.kubeconfig_for_service_account("sriov-dra", "sriov-dra-operator")


def burst_claims(namespace: str, device_class: str, count: int) -> list[dict[str, Any]]:
    """``count`` claims for one VF each, all asking for ifName net1."""
    return [
        claim_manifest(f"burst-{i:02d}", namespace, device_class, vfconfig(ifName="net1"))
        for i in range(count)
    ]


def holders_of(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """Device -> names of the claims whose allocation holds it."""
    holders: dict[tuple[str, str, str], list[str]] = collections.defaultdict(list)
    for body in items:
        for key in allocated_devices(body):
            holders[key].append(body["metadata"]["name"])
    return holders


def settled(
    cluster: DevCluster, namespace: str, allocated: int, waiting: int
) -> list[dict[str, Any]]:
    """Claims once ``allocated`` have an allocation and ``waiting`` got NoDeviceAvailable."""

    def probe() -> list[dict[str, Any]] | None:
        items = claims(cluster, namespace)
        done = [b for b in items if allocated_devices(b)]
        if len(done) != allocated:
            return None
        events = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
        refused = {
            e["involvedObject"]["name"] for e in events if e["reason"] == "NoDeviceAvailable"
        }
        pending = {b["metadata"]["name"] for b in items if not allocated_devices(b)}
        return items if len(pending) == waiting and pending <= refused else None

    return wait_until(probe, timeout=60, what=f"{allocated} allocated and {waiting} refused")
