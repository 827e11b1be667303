"""kwok nodes: their names, the Node object registered for each, and what Ready means.

kwok keeps these nodes' conditions, heartbeats and Leases; nothing runs on them.
They serve tests that need many nodes and no pods.
"""

from __future__ import annotations

from typing import Any, Final

from sriov_dra_devcluster.components import SIMULATED_NODE_ANNOTATION, SIMULATED_NODE_VALUE

NODE_PREFIX: Final = "sim-node-"


def node_names_for(count: int) -> list[str]:
    """The simulated nodes' names: sim-node-1 .. sim-node-<count>."""
    return [f"{NODE_PREFIX}{i}" for i in range(1, count + 1)]


def node_order(name: str) -> tuple[int, str]:
    """Sort key: sim-node-2 before sim-node-10; other names after every numbered one."""
    suffix = name.removeprefix(NODE_PREFIX)
    return (int(suffix), name) if suffix.isdigit() else (1 << 30, name)


def is_simulated(node: dict[str, Any]) -> bool:
    """True for a Node kwok keeps (by the annotation it looks for)."""
    annotations = node["metadata"].get("annotations", {})
    return bool(annotations.get(SIMULATED_NODE_ANNOTATION) == SIMULATED_NODE_VALUE)


def node_manifest(name: str) -> dict[str, Any]:
    """A Node as a kubelet would register it; kwok adds conditions, heartbeats and the Lease."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                SIMULATED_NODE_ANNOTATION: SIMULATED_NODE_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"providerID": f"kwok://{name}"},
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


def node_is_ready(node: dict[str, Any]) -> bool:
    """Ready=True and no taint that would keep pods off it."""
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints") or []
    blocking = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")]
    return ready and not blocking
