"""The driver deployed on the dev cluster's real nodes, as users deploy it.

The demo applies ``crds/`` and ``manifests/simulated`` (the manifests' Deployment
and DaemonSet, with the agent on the simulated NIC backend; containerd pulls the
image from the local registry under its published name). This module knows where
the driver's parts are on this machine (each node's NIC, its leases) and waits
for, or explains, its rollout. Nothing here starts a process of ours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

from sriov_dra.constants import DRIVER_NAME
from sriov_dra_agent.vf.backends.simulated_nic import SimulatedNic

from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.errors import KubectlFailed
from sriov_dra_devcluster.node_layout import runtime_root
from sriov_dra_devcluster.node_plan import SIM_PREFIX

SYSTEM_NAMESPACE: Final = "sriov-dra"
OPERATOR: Final = "deployment/sriov-dra-operator"
AGENT: Final = "daemonset/sriov-dra-agent"


class DeploymentFailed(KubectlFailed):
    """The driver did not come up; carries what kubectl and the pods said."""


class DriverDeployment:
    """The operator Deployment and agent DaemonSet on ``cluster``'s real nodes."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cluster = cluster

    @property
    def nodes(self) -> list[str]:
        """The real nodes (each with an agent and a simulated NIC)."""
        return self.cluster.real_node_names

    def nic(self, node: str) -> SimulatedNic:
        """The simulated SR-IOV NIC of ``node`` (its host netns is the node's netns)."""
        return SimulatedNic(node, prefix=SIM_PREFIX, root=runtime_root(self.cluster.state_dir))

    def cni_data_dir(self, node: str) -> Path:
        """The node's ``/var/lib/cni`` (host-local's leases), seen from this machine."""
        return self.cluster.node_plan(node).directory / "cni"

    def wait_for_slices(self, timeout: float) -> None:
        """Wait until every real node's agent has published a ResourceSlice with VFs."""
        deadline = time.monotonic() + timeout
        while True:
            slices = self.cluster.kubectl_json("get", "resourceslices")["items"]
            published = {
                s["spec"].get("nodeName")
                for s in slices
                if s["spec"].get("driver") == DRIVER_NAME and s["spec"].get("devices")
            }
            missing = [n for n in self.nodes if n not in published]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise DeploymentFailed(
                    ["kubectl", "get", "resourceslices"], 1, "",
                    self.diagnose(f"no ResourceSlice of {DRIVER_NAME} for {', '.join(missing)}"),
                )  # fmt: skip
            time.sleep(0.5)

    def pods(self) -> list[dict[str, Any]]:
        """The driver's pods."""
        items: list[dict[str, Any]] = self.cluster.kubectl_json(
            "get", "pods", "-n", SYSTEM_NAMESPACE
        )["items"]
        return items

    def diagnose(self, problem: str) -> str:
        """``problem`` plus each driver pod's phase, waiting reasons and last log lines."""
        lines = [problem]
        for pod in self.pods():
            name = pod["metadata"]["name"]
            statuses = pod.get("status", {}).get("containerStatuses") or []
            waiting = [
                f"{s['name']}: {s['state']['waiting'].get('reason')} "
                f"{s['state']['waiting'].get('message', '')}".strip()
                for s in statuses
                if "waiting" in s.get("state", {})
            ]
            lines.append(f"pod {name}: {pod['status'].get('phase')} {'; '.join(waiting)}")
            logs = self.cluster.kubectl(
                "logs", "-n", SYSTEM_NAMESPACE, name, "--tail=15", check=False
            )
            lines += [f"  {line}" for line in (logs.stdout or logs.stderr).splitlines()[-15:]]
        events = self.cluster.kubectl(
            "get", "events", "-n", SYSTEM_NAMESPACE, "--sort-by=.lastTimestamp", check=False
        )
        lines += events.stdout.splitlines()[-15:]
        return "\n".join(lines)
