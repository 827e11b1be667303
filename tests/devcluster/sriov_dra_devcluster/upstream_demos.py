"""The Go driver's demos as data: which run here, what each promises, and the summary table.

Pure: the demos stored unchanged under ``tests/data/upstream-demos`` (their
provenance is that directory's README), what the cluster must provide for them
(policy namespaces, the hostname and PF names of ``node_plan``/``real_node_bringup``),
the facts read from each manifest (namespace, NAD subnet, pods, VFs per pod), the
checks of what each demo promises, and the transcript's summary table.
``upstream_walkthrough`` does the I/O.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from sriov_dra.constants import (
    ATTR_PCIE_ROOT,
    ATTR_PF_NAME,
    DRIVER_NAME,
)

from sriov_dra_devcluster.node_plan import UPSTREAM_DEMO_HOSTNAME
from sriov_dra_devcluster.paths import REPO

DEMOS_DIR: Final = REPO / "tests" / "data" / "upstream-demos"
POLICY_NAMESPACES: Final = ("sriov-dra", "dra-sriov-driver", "dra-driver-sriov")
"""The agent's ``POLICY_NAMESPACES`` for the demos: ours, then the two the Go driver's
demos use (its Helm release namespace ``dra-sriov-driver`` in some, ``dra-driver-sriov``
in others)."""
RESOURCE_NAME_ATTRIBUTE: Final = f"{DRIVER_NAME}/resourceName"
GPU_DRIVER: Final = "gpu.example.com"
WAIT: Final = 120.0


@dataclass(frozen=True)
class UpstreamDemo:
    """One upstream demo that runs here, and what it promises beyond net1 in every pod."""

    name: str
    """Its folder under the Go driver's ``demo/`` (and under ``DEMOS_DIR``)."""
    file: str
    promise: str
    """What the demo shows, in a few words (the summary table)."""
    resource_name: str = ""
    """The ``resourceName`` attribute each VF must carry (DeviceAttributes), if any."""
    pf_name: str = ""
    """The PF each VF must come from, if the demo says."""
    gpu: bool = False
    """The claim also holds a ``gpu.example.com`` GPU on the VF's PCIe root."""
    policy_hostname: str = ""
    """While the demo's policy holds, only this node publishes VFs, each with the
    ``resourceName`` ``<PF>_resource`` of its PF's config."""

    @property
    def path(self) -> Path:
        return DEMOS_DIR / self.name / self.file

    def documents(self) -> list[dict[str, Any]]:
        """The manifest's objects."""
        return [d for d in yaml.safe_load_all(self.path.read_text()) if d]

    def facts(self) -> DemoFacts:
        """What the manifest says about namespace, subnet, pods and VFs."""
        return demo_facts(self.documents())


DEMOS: Final = (
    UpstreamDemo("single-vf-claim", "single-vf.yaml", "one VF as net1"),
    UpstreamDemo("multiple-vf-claim", "multiple-vf-one-claim.yaml", "two VFs in one claim"),
    UpstreamDemo("claim-for-deployment", "deployment-vf.yaml", "a VF per Deployment replica"),
    UpstreamDemo("resourceclaim", "resourceclaim-vf.yaml", "a static ResourceClaim"),
    UpstreamDemo(
        "resource-policies",
        "resource-policy.yaml",
        "policy + DeviceAttributes: VF of eth1",
        resource_name="eth1_resource",
        pf_name="eth1",
        policy_hostname=UPSTREAM_DEMO_HOSTNAME,
    ),
    UpstreamDemo(
        "resource-alignment", "resource-alignment.yaml", "VF + GPU on one pcieRoot", gpu=True
    ),
)
"""Run in this order, one at a time: each is deleted before the next is applied."""

NOT_RUN: Final = (
    ("vfio-driver", "binds the VF to vfio-pci: needs a real IOMMU and vfio-pci"),
    ("host-device-vfio", "a non-SR-IOV device (interfaceType Regular) bound to vfio-pci"),
    ("host-device-kernel", "a non-SR-IOV NIC by PCI address (interfaceType Regular): VFs only"),
    ("cxi-device", "HPE Slingshot (Cassini) hardware and its cxi driver"),
    ("multus-integration-single-vf", "a real Multus with DRA support attaches the VF"),
    ("multus-integration-multiple-vf", "a real Multus with DRA support attaches the VFs"),
    ("multus-integration-multiple-resourceclaim", "a real Multus with DRA support"),
    ("resource-filtering", "SriovResourceFilter, a kind the Go driver replaced"),
)
"""The other upstream demos and why they do not run here (README, "Upstream demos")."""


@dataclass(frozen=True)
class DemoFacts:
    """Read from a demo's manifest."""

    namespace: str
    subnets: tuple[ipaddress.IPv4Network, ...]
    """The NADs' host-local subnets: every VF's address must be in one."""
    network_names: tuple[str, ...]
    """The NADs' CNI config names (host-local keeps leases under them)."""
    pods: int
    """Pods that must run: the Pods plus every Deployment's replicas."""
    vfs_per_pod: int


def _requests(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((spec.get("devices") or {}).get("requests")) or [])


def demo_facts(docs: list[dict[str, Any]]) -> DemoFacts:
    """Namespace, NAD subnets, pods and VFs per pod of one demo's objects."""
    namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    configs = [
        json.loads(d["spec"]["config"]) for d in docs if d["kind"] == "NetworkAttachmentDefinition"
    ]
    subnets = tuple(
        ipaddress.IPv4Network(r["subnet"])
        for c in configs
        for ranges in c["ipam"]["ranges"]
        for r in ranges
    )
    pods = sum(1 for d in docs if d["kind"] == "Pod") + sum(
        int(d["spec"].get("replicas", 1)) for d in docs if d["kind"] == "Deployment"
    )
    claim_specs = [d["spec"]["spec"] for d in docs if d["kind"] == "ResourceClaimTemplate"] + [
        d["spec"] for d in docs if d["kind"] == "ResourceClaim"
    ]
    vfs = sum(
        int(r["exactly"].get("count", 1))
        for spec in claim_specs
        for r in _requests(spec)
        if r.get("exactly", {}).get("deviceClassName") == DRIVER_NAME
    )
    return DemoFacts(namespace, subnets, tuple(c["name"] for c in configs), pods, vfs)


@dataclass(frozen=True)
class AllocatedDevice:
    """One allocated device of a pod's claim, with its published attributes."""

    driver: str
    node: str
    device: str
    request: str
    attributes: dict[str, Any]

    def attribute(self, name: str) -> Any:
        """The value of attribute ``name`` (``string``/``int``/``bool``), None if absent."""
        value = self.attributes.get(name) or {}
        return next(iter(value.values()), None) if isinstance(value, dict) else None

    @property
    def vf_netdev(self) -> str:
        """The VF's netdev name on its node's host side (``<PF>v<vfID>``)."""
        return f"{self.attribute(ATTR_PF_NAME)}v{self.attribute(f'{DRIVER_NAME}/vfID')}"


def published_attributes(slices: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    """(driver, pool, device) -> the device's attributes, from every ResourceSlice."""
    return {
        (s["spec"]["driver"], s["spec"]["pool"]["name"], d["name"]): d.get("attributes") or {}
        for s in slices
        for d in s["spec"].get("devices") or []
    }


def allocated_devices(
    claim: dict[str, Any], attributes: dict[tuple[str, str, str], Any]
) -> list[AllocatedDevice]:
    """The claim's allocation results, each with the attributes its slice publishes."""
    results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {}).get(
        "results"
    ) or []
    return [
        AllocatedDevice(
            r["driver"],
            r["pool"],
            r["device"],
            r["request"],
            dict(attributes.get((r["driver"], r["pool"], r["device"]), {})),
        )
        for r in results
    ]


def published_vfs(attributes: dict[tuple[str, str, str], Any]) -> list[AllocatedDevice]:
    """Every VF our driver publishes, as (unallocated) devices with their attributes."""
    return [
        AllocatedDevice(driver, pool, device, "", dict(attrs))
        for (driver, pool, device), attrs in sorted(attributes.items())
        if driver == DRIVER_NAME
    ]


def publication_problems(
    demo: UpstreamDemo, published: list[AllocatedDevice], hostnames: dict[str, str]
) -> list[str]:
    """What the published VFs lack of the demo's policy; ``hostnames``: node -> hostname."""
    if not demo.policy_hostname:
        return []
    problems = []
    for node, hostname in sorted(hostnames.items()):
        vfs = [vf for vf in published if vf.node == node]
        if hostname != demo.policy_hostname:
            if vfs:
                problems.append(f"{node} publishes {len(vfs)} VFs; the policy selects no node but "
                                f"{demo.policy_hostname}")  # fmt: skip
            continue
        if not vfs:
            problems.append(f"{node} ({hostname}) publishes no VF")
        for vf in vfs:
            wanted = f"{vf.attribute(ATTR_PF_NAME)}_resource"
            if vf.attribute(RESOURCE_NAME_ATTRIBUTE) != wanted:
                got = vf.attribute(RESOURCE_NAME_ATTRIBUTE)
                problems.append(f"{node} VF {vf.device}: resourceName {got!r}, not {wanted!r}")
    return problems


@dataclass
class PodCheck:
    """One pod of a demo: its node, devices, VF interfaces and GPU environment."""

    pod: str
    node: str
    devices: list[AllocatedDevice]
    interfaces: dict[str, tuple[str, ...]]
    """Interfaces other than lo and eth0: name -> IPv4 addresses (CIDR)."""
    hostname: str = ""
    gpu_env: dict[str, str] = field(default_factory=dict)


def pod_problems(demo: UpstreamDemo, facts: DemoFacts, pod: PodCheck) -> list[str]:
    """What ``pod`` lacks of the demo's promises; empty when it keeps them all."""
    problems = []
    vfs = [d for d in pod.devices if d.driver == DRIVER_NAME]
    if len(vfs) != facts.vfs_per_pod:
        problems.append(f"{pod.pod}: {len(vfs)} VFs allocated, the demo wants {facts.vfs_per_pod}")
    if len(pod.interfaces) != len(vfs):
        problems.append(f"{pod.pod}: {len(pod.interfaces)} VF interfaces for {len(vfs)} VFs")
    for name, addresses in sorted(pod.interfaces.items()):
        if not any(
            ipaddress.IPv4Interface(a).ip in subnet for a in addresses for subnet in facts.subnets
        ):
            wanted = ", ".join(str(s) for s in facts.subnets)
            problems.append(f"{pod.pod}: {name} has no address in {wanted} ({addresses})")
    for vf in vfs:
        if demo.resource_name and vf.attribute(RESOURCE_NAME_ATTRIBUTE) != demo.resource_name:
            problems.append(
                f"{pod.pod}: VF {vf.device} has resourceName "
                f"{vf.attribute(RESOURCE_NAME_ATTRIBUTE)!r}, not {demo.resource_name!r}"
            )
        if demo.pf_name and vf.attribute(ATTR_PF_NAME) != demo.pf_name:
            problems.append(f"{pod.pod}: VF {vf.device} is of PF {vf.attribute(ATTR_PF_NAME)}")
    if demo.gpu:
        problems += _gpu_problems(pod, vfs)
    return problems


def _gpu_problems(pod: PodCheck, vfs: list[AllocatedDevice]) -> list[str]:
    gpus = [d for d in pod.devices if d.driver == GPU_DRIVER]
    if len(gpus) != 1:
        return [f"{pod.pod}: {len(gpus)} GPUs allocated, the demo asks for 1"]
    gpu = gpus[0]
    problems = []
    if pod.gpu_env.get("GPU_DEVICE_0") != gpu.device:
        problems.append(f"{pod.pod}: GPU_DEVICE_0={pod.gpu_env.get('GPU_DEVICE_0')!r}, "
                        f"not the allocated {gpu.device}")  # fmt: skip
    roots = {d.attribute(ATTR_PCIE_ROOT) for d in [gpu, *vfs]}
    if len(roots) != 1 or None in roots:
        problems.append(f"{pod.pod}: VF and GPU on different PCIe roots: {sorted(map(str, roots))}")
    return problems


def gpu_environment(printenv: str) -> dict[str, str]:
    """``GPU_DEVICE_*`` variables of ``printenv`` output."""
    pairs = (line.partition("=") for line in printenv.splitlines())
    return {k: v for k, _, v in pairs if k.startswith("GPU_DEVICE_")}


def leftover_leases(names: list[str]) -> list[str]:
    """The file names in a host-local network directory that are leases (IP addresses)."""
    left = []
    for name in names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            continue
        left.append(name)
    return sorted(left)


@dataclass
class DemoOutcome:
    """One demo's run, for the summary table."""

    demo: UpstreamDemo
    pods: int = 0
    ready_seconds: float = 0.0
    checked: list[str] = field(default_factory=list)
    released_seconds: float = 0.0
    failure: str = ""

    @property
    def passed(self) -> bool:
        return not self.failure and self.released_seconds > 0


def summary_table(outcomes: list[DemoOutcome]) -> list[str]:
    """The transcript's table: every upstream demo, run here or why not."""
    rows = [("demo", "result", "pods", "ready", "released", "shown")]
    for o in outcomes:
        rows.append(
            (
                o.demo.name,
                "PASS" if o.passed else "FAIL",
                str(o.pods),
                f"{o.ready_seconds:.1f}s",
                f"{o.released_seconds:.1f}s" if o.released_seconds else "-",
                o.failure or o.demo.promise,
            )
        )
    for name, why in NOT_RUN:
        rows.append((name, "not run", "-", "-", "-", why))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
