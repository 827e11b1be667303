"""The operator's cache never goes back in time and indexes holders and pending pods."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.device_pools import DeviceKey
from sriov_dra_operator.cache import ClusterCache, pending_claim_refs

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"


def claim(
    rv: str, *devices: str, uid: str = "u1", name: str = "c1", **status: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"uid": uid, "name": name, "namespace": "ns", "resourceVersion": rv},
        "status": dict(status),
    }
    if devices:
        body["status"]["allocation"] = {
            "devices": {
                "results": [
                    {"request": "vf", "driver": DRIVER, "pool": "node-a", "device": d}
                    for d in devices
                ]
            }
        }
    return body


def key(device: str) -> DeviceKey:
    return DeviceKey(DRIVER, "node-a", device)


def test_newer_allocation_is_recorded_and_indexed() -> None:
    cache = ClusterCache()
    cache.upsert_claim(claim("5"))
    change = cache.upsert_claim(claim("6", "vf0"))
    assert change is not None and change.freed == frozenset()
    assert cache.holders[key("vf0")] == {"u1"}
    assert cache.devices_of("u1") == {key("vf0")}


def test_stale_event_after_our_write_is_ignored() -> None:
    # Our write returned rv 7 with an allocation; the watch then delivers rv 6 without.
    cache = ClusterCache()
    cache.upsert_claim(claim("7", "vf0"))
    assert cache.upsert_claim(claim("6")) is None
    assert key("vf0") in cache.holders


def test_cleared_allocation_frees_devices_and_is_flagged() -> None:
    cache = ClusterCache()
    cache.upsert_claim(claim("7", "vf0", "vf1"))
    change = cache.upsert_claim(claim("8"))
    assert change is not None
    assert change.freed == {key("vf0"), key("vf1")}
    assert change.allocation_cleared
    assert not cache.holders


def test_deleted_claim_stays_deleted_when_a_late_write_response_arrives() -> None:
    cache = ClusterCache()
    cache.upsert_claim(claim("7", "vf0"))
    change = cache.remove_claim(claim("9", "vf0"))
    assert change is not None and change.freed == {key("vf0")}
    assert cache.upsert_claim(claim("8", "vf0")) is None
    assert not cache.holders and not cache.claims


def test_two_holders_of_one_device_are_both_indexed() -> None:
    cache = ClusterCache()
    cache.upsert_claim(claim("1", "vf0", uid="a", name="a"))
    cache.upsert_claim(claim("2", "vf0", uid="b", name="b"))
    assert cache.holders[key("vf0")] == {"a", "b"}
    cache.remove_claim(claim("3", uid="a", name="a"))
    assert cache.holders[key("vf0")] == {"b"}


def pod(node: str = "", phase: str = "Pending", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"uid": "p1", "name": "p", "namespace": "ns", **meta},
        "spec": {
            "nodeName": node,
            "resourceClaims": [
                {"name": "vf", "resourceClaimName": "static"},
                {"name": "gpu", "resourceClaimTemplateName": "tmpl"},
            ],
        },
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("body", "pending"),
    [
        (pod(), {("ns", "static")}),
        (pod(node="sim-node-1"), set()),
        (pod(phase="Failed"), set()),
        (pod(deletionTimestamp="2026-01-01T00:00:00Z"), set()),
    ],
    ids=["unscheduled", "scheduled", "failed", "deleting"],
)
def test_pending_pod_refs(body: dict[str, Any], pending: set[tuple[str, str]]) -> None:
    assert pending_claim_refs(body) == pending


def test_pod_scheduling_reports_the_claim_it_stopped_pending_on() -> None:
    cache = ClusterCache()
    assert cache.upsert_pod(pod()) == {("ns", "static")}
    assert cache.has_pending_pod(("ns", "static"))
    assert cache.upsert_pod(pod(node="sim-node-1")) == {("ns", "static")}
    assert not cache.has_pending_pod(("ns", "static"))
    assert cache.remove_pod(pod(node="sim-node-1")) == frozenset()


def test_in_flight_reservation_and_allocation_overlap_without_freeing_early() -> None:
    cache = ClusterCache()
    cache.reserve([key("vf0")])
    assert key("vf0") in cache.usage
    cache.upsert_claim(claim("7", "vf0"))  # our write's response lands first
    cache.unreserve([key("vf0")])
    assert key("vf0") in cache.usage
    cache.upsert_claim(claim("8"))
    assert key("vf0") not in cache.usage
    cache.reserve([key("vf1")])
    cache.unreserve([key("vf1")])  # the write failed: nothing taken
    assert list(cache.usage) == []


def test_a_relist_forgets_pods_it_no_longer_names_and_reports_their_claims() -> None:
    cache = ClusterCache()
    cache.upsert_pod(pod())
    other = pod(uid="p2", name="q")
    other["spec"]["resourceClaims"] = [{"name": "vf", "resourceClaimName": "other"}]
    # p1 was scheduled (or deleted) while the watch was broken; p2 is new.
    assert cache.replace_pods([other]) == {("ns", "static"), ("ns", "other")}
    assert not cache.has_pending_pod(("ns", "static"))
    assert cache.has_pending_pod(("ns", "other"))
    assert cache.replace_pods([other]) == frozenset()


def test_claims_and_slices_are_kept_without_managed_fields() -> None:
    cache = ClusterCache()
    managed = [{"manager": "sriov-dra-operator", "operation": "Update", "fieldsV1": {"f:x": {}}}]
    body = claim("5", "vf-0")
    body["metadata"]["managedFields"] = managed
    cache.upsert_claim(body)
    kept = cache.claims["u1"]
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == "5"
    assert cache.devices_of("u1") == {key("vf-0")}
    assert body["metadata"]["managedFields"] == managed  # the caller's object is not changed

    cache.upsert_slice(
        {
            "metadata": {"name": "s1", "resourceVersion": "7", "managedFields": managed},
            "spec": {"driver": DRIVER, "devices": [{"name": "vf-0", "attributes": {}}]},
        }
    )
    assert "managedFields" not in cache.slices["s1"]["metadata"]
    assert cache.slices["s1"]["spec"]["devices"][0]["name"] == "vf-0"
