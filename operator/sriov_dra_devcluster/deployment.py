"""The driver deployed on the dev cluster's real nodes, as users deploy it.

``kubectl apply -f crds/`` and ``kubectl apply -k manifests/simulated`` (the
manifests' Deployment and DaemonSet, with the agent on the simulated NIC
backend), the image pulled by containerd from the local registry under its
published name. Then wait until the operator runs, every real node's agent runs
and has published its VFs. Nothing here starts a process of ours on this machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from sriov_dra.constants import DRIVER_NAME
from sriov_dra_agent.simulated_nic import SimulatedNic

from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.errors import KubectlFailed
from sriov_dra_devcluster.node_layout import runtime_root
from sriov_dra_devcluster.node_plan import SIM_PREFIX

REPO: Final = Path(__file__).resolve().parents[2]
CRDS: Final = REPO / "crds"
KUSTOMIZATION: Final = REPO / "manifests" / "simulated"
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

    def apply(self, log: Callable[[str], None] = print, timeout: float = 240.0) -> None:
        """Apply CRDs and manifests; wait for the rollout and every node's ResourceSlice."""
        kubectl = self.cluster.kubectl
        kubectl("apply", "-f", str(CRDS))
        kubectl(
            "wait", "--for=condition=Established",
            "crd/network-attachment-definitions.k8s.cni.cncf.io", "--timeout=60s",
        )  # fmt: skip
        kubectl("apply", "-k", str(KUSTOMIZATION))
        t0 = time.monotonic()
        for workload in (AGENT, OPERATOR):
            result = kubectl(
                "rollout", "status", workload, "-n", SYSTEM_NAMESPACE, f"--timeout={timeout:.0f}s",
                check=False, timeout=timeout + 30,
            )  # fmt: skip
            if result.returncode != 0:
                raise DeploymentFailed(
                    result.args, result.returncode, result.stdout, self.diagnose(result.stderr)
                )
        self.wait_for_slices(timeout)
        took = time.monotonic() - t0
        log(f"sriov-dra operator and {len(self.nodes)} agent(s) running in {took:.1f}s")

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

    def delete(self, timeout: float = 120.0) -> None:
        """Remove what ``apply`` created (the manifests, then the CRDs)."""
        self.cluster.kubectl(
            "delete", "-k", str(KUSTOMIZATION), "--ignore-not-found", f"--timeout={timeout:.0f}s",
            check=False, timeout=timeout + 30,
        )  # fmt: skip


def pod_json(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The pod, or None when it does not exist."""
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    pod: dict[str, Any] = json.loads(result.stdout)
    return pod
