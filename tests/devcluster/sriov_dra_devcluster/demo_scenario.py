"""The seed scenario as data: its names, the manifests the demo adds, what each step shows.

Pure: the constants of the seed's Usage section, pod1 verbatim, the peer pod's
manifests, the views the walkthrough returns, and parsers of ``ping`` output.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import yaml
from sriov_dra.constants import DRIVER_NAME

from sriov_dra_devcluster.paths import SEED_EXAMPLE

EXAMPLE: Final = SEED_EXAMPLE
NAMESPACE: Final = "vf-resourceclaim-test"
CLAIM: Final = "static-vf-claim"
SUBNET: Final = ipaddress.IPv4Network("10.0.3.0/24")
PEER_RANGE: Final = ("10.0.3.100", "10.0.3.199")
WAIT: Final = 90.0
T = TypeVar("T")

POD1: Final = """\
apiVersion: v1
kind: Pod
metadata:
  namespace: vf-resourceclaim-test
  name: pod1
spec:
  containers:
  - name: ctr0
    image: quay.io/schseba/toolbox:latest
    command: ["/bin/bash", "-c", "sleep INF"]
    resources:
      claims:
      - name: vf
  resourceClaims:
  - name: vf
    resourceClaimName: static-vf-claim
"""
"""The seed's "Reusing Claims" pod, verbatim."""


def on_node(node: str) -> dict[str, Any]:
    """A pod's ``affinity`` that pins it to ``node`` by name.

    Not by the ``kubernetes.io/hostname`` label: node-1's is the upstream demos' (node_plan).
    """
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [term]
        }}
    }  # fmt: skip


class DemoFailed(Exception):
    """A step did not do what the scenario promises; the message says what was seen."""


@dataclass(frozen=True)
class NetIf:
    """An interface as ``ip -j addr`` shows it inside a pod."""

    name: str
    mac: str
    addresses: tuple[str, ...]
    alias: str = ""


@dataclass
class ClaimView:
    """Step 2: what the claim says about its VF."""

    node: str
    device: str
    pci_address: str
    reserved_for: list[str]
    net1_ips: list[str]
    net1_mac: str
    allocated_by_operator: bool
    describe: str
    events: list[str] = field(default_factory=list)


@dataclass
class PodView:
    """Step 3: the pod as the API server reports it."""

    name: str
    node: str
    phase: str
    ready: bool
    pod_ip: str
    describe: str
    container_id: str = ""


@dataclass
class PingResult:
    """Step 5: the second pod and the ping across the simulated switch."""

    peer_node: str
    peer_ip: str
    transmitted: int
    received: int
    output: str
    service_ip: str = ""


@dataclass
class ReuseResult:
    """Reusing Claims: the allocation before and after, and pod1's interface."""

    device_before: str
    device_after: str
    node_before: str
    node_after: str
    reserved_after_delete: list[str]
    pod1_node: str
    pod1_net1: NetIf


@dataclass
class CleanupResult:
    """Clean-up: the claim gone, the VF back on the node, the lease gone."""

    claim_gone: bool
    vf_netdev: str
    vf_in_host: bool
    leases_left: list[str]


def peer_manifests(node: str) -> str:
    """NAD, ResourceClaimTemplate and pod of the second pod, pinned to ``node``."""
    nad_config = {
        "cniVersion": "1.0.0",
        "name": "vf-peer",
        "type": "sriov",
        "vlan": 0,
        "spoofchk": "on",
        "trust": "on",
        "ipam": {
            "type": "host-local",
            "ranges": [
                [{"subnet": str(SUBNET), "rangeStart": PEER_RANGE[0], "rangeEnd": PEER_RANGE[1]}]
            ],
        },
    }
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "vf-peer", "namespace": NAMESPACE},
            "spec": {"config": json.dumps(nad_config)},
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "peer-vf", "namespace": NAMESPACE},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [{"name": "vf", "exactly": {"deviceClassName": DRIVER_NAME}}],
                        "config": [
                            {
                                "requests": ["vf"],
                                "opaque": {
                                    "driver": DRIVER_NAME,
                                    "parameters": {
                                        "apiVersion": f"{DRIVER_NAME}/v1alpha1",
                                        "kind": "VfConfig",
                                        "ifName": "net1",
                                        "netAttachDefName": "vf-peer",
                                    },
                                },
                            }
                        ],
                    }
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "peer", "namespace": NAMESPACE},
            "spec": {
                "affinity": on_node(node),
                "containers": [
                    {
                        "name": "ctr0",
                        "image": "quay.io/schseba/toolbox:latest",
                        "command": ["/bin/bash", "-c", "sleep INF"],
                        "resources": {"claims": [{"name": "vf"}]},
                    }
                ],
                "resourceClaims": [{"name": "vf", "resourceClaimTemplateName": "peer-vf"}],
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def unreserved(claim: dict[str, Any] | None) -> dict[str, Any] | None:
    if (
        claim
        and claim.get("status", {}).get("allocation")
        and not claim["status"].get("reservedFor")
    ):
        return claim
    return None


def resolved_address(ping_output: str) -> str | None:
    """The address in ping's first line (``PING name (10.96.0.1) ...``), None if unresolved."""
    for line in ping_output.splitlines():
        if line.startswith("PING ") and "(" in line:
            return line.split("(", 1)[1].split(")", 1)[0]
    return None


def ping_counts(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line; (0, 0) when there is none."""
    for line in output.splitlines():
        if "packets transmitted" in line:
            parts = line.split(",")
            return int(parts[0].split()[0]), int(parts[1].split()[0])
    return 0, 0
