"""An agent watches only its node's label, and still gets the claims kube-scheduler allocated.

The operator runs as a process; the agent's claim watcher runs here, as the agent's
ServiceAccount with the shipped RBAC, over a claim manager that only records what
it is asked to do (no VF is touched). A template claim (generated for a pod, never
the operator's to allocate or adopt) is allocated on the node as kube-scheduler
would: the operator gives it the node label, so the label-filtered watch delivers
it and the agent reconciles it. When its allocation is cleared the operator takes
the label away; the watch then says DELETED, and the agent asks the API server
instead of releasing on that word alone.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from operator_harness import OperatorProcess, ensure_crds_and_class
from sriov_dra.constants import DRIVER_NAME, FINALIZER, NODE_LABEL
from sriov_dra.naming import device_name
from sriov_dra.node_selector import node_selector
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_manager import ClaimManager
from sriov_dra_agent.cluster.claim_watcher import ClaimWatcher
from sriov_dra_agent.cluster.nad_cache import NadCache
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_kube.client import KubeApi

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PATIENCE = 60.0
"""Seconds before a wait gives up (a hang guard, not a measurement)."""


class RecordingManager:
    """The claim manager's calls the watcher makes, recorded; it holds no VF."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def reconcile(self, claim: dict[str, Any]) -> None:
        self.calls.append(("reconcile", claim))
        self.changed.set()

    async def claim_gone(self, uid: str, namespace: str, name: str) -> None:
        self.calls.append(("gone", {"metadata": {"uid": uid}}))
        self.changed.set()

    def held_claims(self) -> dict[str, tuple[str, str]]:
        return {}

    def claims_using_nad(self, namespace: str, name: str) -> list[str]:
        return []

    async def detach_dead(self, locks: ClaimLocks) -> list[str]:
        return []

    async def until(self, what: str, found: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not found():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), PATIENCE)
        except TimeoutError:
            pytest.fail(f"the agent's watcher never got {what}; calls: {self.calls}")


class Nads:
    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """No NAD changes here."""


def kubectl_json(cluster: DevCluster, *args: str, body: dict[str, Any]) -> dict[str, Any]:
    result = cluster.kubectl(*args, "-o", "json", "-f", "-", input=json.dumps(body))
    return dict(json.loads(result.stdout))


async def test_a_scheduler_allocated_claim_reaches_the_label_filtered_agent(
    cluster: DevCluster, operator: OperatorProcess, namespace: str
) -> None:
    ensure_crds_and_class(cluster)
    for manifest in ("namespace.yaml", "serviceaccounts.yaml", "rbac-agent.yaml"):
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / manifest))
    agent_kubeconfig = cluster.kubeconfig_for_service_account("sriov-dra", "sriov-dra-agent")
    node = f"scope-{secrets.token_hex(3)}"
    # A pod no scheduler serves, and the claim generated for it from a template.
    pod = kubectl_json(cluster, "create", body={
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "user", "namespace": namespace},
        "spec": {
            "schedulerName": "nobody",
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
        },
    })  # fmt: skip
    claim = kubectl_json(cluster, "create", body={
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {
            "name": "user-vf", "namespace": namespace,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": "user",
                "uid": pod["metadata"]["uid"], "controller": True,
            }],
        },
        "spec": {"devices": {"requests": [
            {"name": "vf", "exactly": {"deviceClassName": DRIVER_NAME}}
        ]}},
    })  # fmt: skip
    uid = claim["metadata"]["uid"]

    manager = RecordingManager()
    api = await KubeApi.from_kubeconfig(agent_kubeconfig)
    watcher = ClaimWatcher(
        api, cast(ClaimManager, manager), ClaimLocks(), cast(NadCache, Nads()), node=node
    )
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.wait_for(watcher.synced.wait(), PATIENCE)
        device = device_name("0000:3b:02.0")
        allocation = {
            "devices": {
                "results": [
                    {"request": "vf", "driver": DRIVER_NAME, "pool": node, "device": device}
                ]
            },
            "nodeSelector": node_selector(node),
        }
        cluster.kubectl(
            "patch", "resourceclaim", "user-vf", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"allocation": allocation}}),
        )  # fmt: skip

        def reconciled_allocated() -> bool:
            return any(
                kind == "reconcile"
                and body["metadata"]["uid"] == uid
                and (body.get("status") or {}).get("allocation")
                for kind, body in manager.calls
            )

        await manager.until("the allocated claim", reconciled_allocated)
        stored = json.loads(
            cluster.kubectl("get", "resourceclaim", "user-vf", "-n", namespace, "-o", "json").stdout
        )
        assert stored["metadata"]["labels"] == {NODE_LABEL: node}
        # Labelled only: the claim stays the scheduler's.
        assert FINALIZER not in (stored["metadata"].get("finalizers") or [])

        # Deallocated (as the claim controller does): the operator removes the label, the
        # watch says DELETED, and the agent reconciles the claim as it now is.
        seen = len(manager.calls)
        cluster.kubectl(
            "patch", "resourceclaim", "user-vf", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"allocation": None}}),
        )  # fmt: skip
        await manager.until(
            "the unlabelled claim",
            lambda: any(
                kind == "reconcile" and not (body["metadata"].get("labels") or {})
                for kind, body in manager.calls[seen:]
            ),
        )
        assert "gone" not in [kind for kind, _ in manager.calls[seen:]]
    finally:
        stop.set()
        await task
        await api.close()
        cluster.kubectl("delete", "pod", "user", "-n", namespace, "--wait=false", check=False)
