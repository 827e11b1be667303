"""The operator's unscheduled-pod watch: what enters and leaves the selection reaches the cache."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from kubernetes_asyncio import client
from sriov_dra_operator.cache import ClusterCache, Ref
from sriov_dra_operator.pending_pods import UNSCHEDULED, PendingPods


def pod(uid: str = "p1") -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": uid, "namespace": "ns"},
        "spec": {"resourceClaims": [{"name": "vf", "resourceClaimName": "static"}]},
        "status": {"phase": "Pending"},
    }


def test_a_pod_leaving_the_selection_stops_pending_and_its_claim_is_rechecked() -> None:
    cache = ClusterCache()
    changed: list[Ref] = []

    def on_change(refs: Iterable[Ref]) -> None:
        changed.extend(refs)

    pods = PendingPods(cast(client.ApiClient, None), cache, on_change)
    watch = pods.list_watch()
    watch.on_event("ADDED", pod())
    assert cache.has_pending_pod(("ns", "static"))
    assert changed == [("ns", "static")]
    # Scheduled: it no longer matches spec.nodeName=, so the watch says DELETED.
    watch.on_event("DELETED", {**pod(), "spec": {**pod()["spec"], "nodeName": "sim-node-1"}})
    assert not cache.has_pending_pod(("ns", "static"))
    assert changed == [("ns", "static")] * 2


def test_the_selector_asks_for_pods_without_a_node() -> None:
    assert UNSCHEDULED == "spec.nodeName="
