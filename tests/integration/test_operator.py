"""The operator as a process against the real control plane.

ResourceSlices are created by the tests for the simulated nodes; the tests play
the node agent when a deleted claim's VF must be reported released. Each test
uses its own namespace and its own VFs (a DeviceClass that selects only them),
so tests never take each other's VFs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from operator_harness import (
    OperatorProcess,
    allocated_devices,
    apply,
    burst_claims,
    claim,
    claim_manifest,
    claims,
    conflict_events,
    create,
    device_class_manifest,
    events_for,
    holders_of,
    load_seed,
    nad_manifest,
    operator_kubeconfig,
    release,
    release_all,
    settled,
    simulated_vfs,
    sriov_conf,
    vfconfig,
    wait_allocated,
    wait_for_event,
)
from sriov_dra import allocation_record
from sriov_dra.allocator import allocate, pools_from_slices
from sriov_dra.constants import (
    ALLOCATION_ANNOTATION,
    DRIVER_NAME,
    FINALIZER,
    KUBE_DELETE_PROTECTION,
    NODE_LABEL,
)
from sriov_dra.errors import NoDeviceAvailable, SriovDraError
from sriov_dra.nad import parse_nad_config
from sriov_dra.vfconfig import nad_reference, parse_vfconfig
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

CONFIG_FIELD = "spec.devices.config[0].opaque.parameters"
YIELD = 4
"""--yield-seconds of the module's operator: short, so the hand-back is seen in a test."""


@pytest.fixture(scope="module")
def operator(
    cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator process for the module's tests that need no restart.

    It runs as its ServiceAccount with the shipped RBAC, so a missing rule fails here.
    """
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(operator_kubeconfig(cluster), log, f"--yield-seconds={YIELD}").start()
    try:
        yield process
    finally:
        process.stop()
        print(f"\noperator log: {log}")


@pytest.fixture
def clean_claims(cluster: DevCluster, namespace: str) -> Iterator[str]:
    """The namespace; afterwards every claim in it is released and deleted."""
    yield namespace
    release_all(cluster, namespace)


def assert_untouched_by_kopf(body: dict[str, Any]) -> None:
    """No kopf bookkeeping on the claim, nothing in status but the allocation."""
    meta = body["metadata"]
    foreign = [k for k in meta.get("annotations") or {} if "kopf" in k]
    assert foreign == [], f"kopf annotations on the claim: {foreign}"
    assert [f for f in meta.get("finalizers") or [] if f != FINALIZER] == []
    assert set(body.get("status") or {}) <= {"allocation"}


def test_seed_claim_is_allocated_and_described(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=4):
        nad, seed_claim = load_seed(namespace)
        apply(cluster, nad, seed_claim)
        body = wait_allocated(cluster, namespace, "static-vf-claim")

        allocation = body["status"]["allocation"]
        [result] = allocation["devices"]["results"]
        assert result["request"] == "vf"
        assert result["driver"] == DRIVER_NAME
        node = allocation["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        assert node in cluster.node_names
        assert allocation["devices"]["config"] == [
            {
                "source": "FromClaim",
                "requests": ["vf"],
                "opaque": seed_claim["spec"]["devices"]["config"][0]["opaque"],
            }
        ]
        assert body["metadata"]["labels"][NODE_LABEL] == node
        assert FINALIZER in body["metadata"]["finalizers"]
        [record] = allocation_record.decode(body["metadata"]["annotations"][ALLOCATION_ANNOTATION])
        assert (record.node, record.pool, record.device) == (node, result["pool"], result["device"])
        assert record.pf == "simpf0"
        assert record.if_name == "net1"
        assert record.nad == f"{namespace}/vf-resourceclaim-test"
        assert_untouched_by_kopf(body)

        event = wait_for_event(cluster, namespace, "static-vf-claim", "Allocated")
        assert event["type"] == "Normal"
        assert event["message"] == (
            f"allocated VF {record.pci_address} (vfIndex {record.vf_index}, device "
            f"{record.pool}/{record.device}) of PF simpf0 as net1 for NAD "
            f"{namespace}/vf-resourceclaim-test on node {node}"
        )
        described = cluster.kubectl(
            "describe", "resourceclaim", "static-vf-claim", "-n", namespace
        ).stdout
        assert "Allocated" in described and record.pci_address in described
        metrics = operator.metrics()
        assert f'sriov_dra_operator_allocations_total{{node="{node}"}}' in metrics
        assert "sriov_dra_operator_reconcile_duration_seconds_bucket" in metrics
        assert operator.healthz() == 200
        gauges = wait_until(
            lambda: (lambda text: text if f'vfs_allocated{{node="{node}"}}' in text else None)(
                operator.metrics()
            ),
            timeout=10,
            what="the per-node VF gauges",
        )
        assert f'sriov_dra_operator_vfs_free{{node="{node}"}}' in gauges
        logged = [
            r
            for r in operator.log_records()
            if r.get("message") == "allocated" and r.get("claim") == f"{namespace}/static-vf-claim"
        ]
        assert logged and logged[0]["vf"] == record.pci_address and logged[0]["pf"] == "simpf0"


def _invalid_vfconfig(parameters: dict[str, Any]) -> str:
    with pytest.raises(SriovDraError) as info:
        parse_vfconfig(parameters, field=CONFIG_FIELD)
    return info.value.describe()


def _cross_namespace(parameters: dict[str, Any], namespace: str) -> str:
    cfg = parse_vfconfig(parameters, field=CONFIG_FIELD)
    with pytest.raises(SriovDraError) as info:
        nad_reference(cfg, claim_namespace=namespace, allowed_namespaces=frozenset())
    return info.value.describe()


def _invalid_nad(config: dict[str, Any], nad: str) -> str:
    with pytest.raises(SriovDraError) as info:
        parse_nad_config(json.dumps(config), nad=nad)
    return info.value.describe()


BAD_INPUTS = [
    ("wrong-kind", {"kind": "VfConf", "ifName": "net1"}, None, "InvalidVfConfig"),
    ("unknown-field", {"ifNmae": "net1"}, None, "InvalidVfConfig"),
    ("ifname-too-long", {"ifName": "averyveryverylongname"}, None, "InvalidVfConfig"),
    ("ifname-slash", {"ifName": "net/1"}, None, "InvalidVfConfig"),
    ("bad-driver", {"driver": "igb_uio"}, None, "InvalidVfConfig"),
    (
        "cross-namespace-nad",
        {"netAttachDefName": "net", "netAttachDefNamespace": "elsewhere"},
        None,
        "InvalidVfConfig",
    ),
    ("missing-nad", {"netAttachDefName": "absent"}, None, "NetworkAttachmentDefinitionNotFound"),
    (
        "nad-vlan-out-of-range",
        {"netAttachDefName": "net"},
        {"vlan": 5000},
        "InvalidNetworkAttachmentDefinition",
    ),
    (
        "nad-qos-without-vlan",
        {"netAttachDefName": "net"},
        {"vlanQoS": 3},
        "InvalidNetworkAttachmentDefinition",
    ),
    (
        "nad-spoofchk-bool",
        {"netAttachDefName": "net"},
        {"spoofchk": True},
        "InvalidNetworkAttachmentDefinition",
    ),
]


@pytest.mark.parametrize(
    ("case", "params", "nad_fields", "reason"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_its_event_and_no_allocation(
    cluster: DevCluster,
    operator: OperatorProcess,
    clean_claims: str,
    case: str,
    params: dict[str, Any],
    nad_fields: dict[str, Any] | None,
    reason: str,
) -> None:
    namespace = clean_claims
    parameters = {**vfconfig(), **params}
    if reason == "InvalidVfConfig" and case == "cross-namespace-nad":
        expected = _cross_namespace(parameters, namespace)
    elif reason == "InvalidVfConfig":
        expected = _invalid_vfconfig(parameters)
    elif reason == "NetworkAttachmentDefinitionNotFound":
        expected = (
            f"netAttachDefName: NetworkAttachmentDefinition {namespace}/absent named by request "
            f"'vf' does not exist; fix: create NetworkAttachmentDefinition absent in namespace "
            f"{namespace} (the claim is allocated as soon as it exists) or correct "
            "netAttachDefName"
        )
    else:
        assert nad_fields is not None
        expected = _invalid_nad(sriov_conf("net", **nad_fields), f"{namespace}/net")
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        objects = [claim_manifest("bad", namespace, device_class, parameters)]
        if nad_fields is not None:
            objects.insert(0, nad_manifest("net", namespace, sriov_conf("net", **nad_fields)))
        apply(cluster, *objects)
        event = wait_for_event(cluster, namespace, "bad", reason)
        assert event["type"] == "Warning"
        assert event["message"] == expected
        body = claim(cluster, namespace, "bad")
        assert body is not None
        assert allocated_devices(body) == []
        assert FINALIZER not in (body["metadata"].get("finalizers") or [])
        assert NODE_LABEL not in (body["metadata"].get("labels") or {})
        assert_untouched_by_kopf(body)
        # Reconciled again later (any kick) it must not repeat itself.
        assert [e["reason"] for e in events_for(cluster, namespace, "bad")] == [reason]


def test_nad_created_or_fixed_after_the_claim_unblocks_it(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        apply(
            cluster,
            claim_manifest("late", namespace, device_class, vfconfig(netAttachDefName="late")),
            nad_manifest("broken", namespace, sriov_conf("broken", vlan=9999)),
            claim_manifest("fixed", namespace, device_class, vfconfig(netAttachDefName="broken")),
        )
        wait_for_event(cluster, namespace, "late", "NetworkAttachmentDefinitionNotFound")
        wait_for_event(cluster, namespace, "fixed", "InvalidNetworkAttachmentDefinition")
        # Well within kopf's and our 10-60 s retry delays: only the NAD watch can do this.
        apply(
            cluster,
            nad_manifest("late", namespace, sriov_conf("late")),
            nad_manifest("broken", namespace, sriov_conf("broken", vlan=100)),
        )
        wait_allocated(cluster, namespace, "late", timeout=8)
        wait_allocated(cluster, namespace, "fixed", timeout=8)


def test_a_claim_whose_device_class_comes_later_is_told_then_allocated(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    late_class = f"{namespace}-late"
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as group:
        apply(cluster, claim_manifest("early", namespace, late_class, vfconfig()))
        event = wait_for_event(cluster, namespace, "early", "DeviceClassNotFound")
        assert event["type"] == "Warning"
        assert event["message"] == (
            f"spec.devices.requests[0].exactly.deviceClassName: DeviceClass '{late_class}' "
            f"does not exist; fix: create DeviceClass '{late_class}' with a selector for driver "
            f"{DRIVER_NAME}, or correct the name (the class this project ships is "
            f"'{DRIVER_NAME}': kubectl apply -f manifests/deviceclass.yaml); the claim is "
            "allocated as soon as the class exists"
        )
        # The VFs are published already: only the DeviceClass watch can unblock the claim,
        # well within the 10-60 s retry delays. (Labelled with the group: cleaned up with it.)
        apply(cluster, device_class_manifest(late_class, group))
        wait_allocated(cluster, namespace, "early", timeout=8)
        wait_for_event(cluster, namespace, "early", "Allocated")
        reasons = sorted(e["reason"] for e in events_for(cluster, namespace, "early"))
        assert reasons == ["Allocated", "DeviceClassNotFound"]


def _reconciles(operator: OperatorProcess) -> float:
    """Reconciles the operator process has done so far."""
    for line in operator.metrics().splitlines():
        if line.startswith("sriov_dra_operator_reconcile_duration_seconds_count"):
            return float(line.split()[-1])
    return 0.0


def test_a_restart_repeats_no_event_of_an_unchanged_waiting_claim(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    reason = "NetworkAttachmentDefinitionNotFound"
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        apply(cluster, claim_manifest("patient", namespace, device_class,
                                      vfconfig(netAttachDefName="later")))  # fmt: skip
        wait_for_event(cluster, namespace, "patient", reason)
        operator.stop()
        operator.start()
        # The restarted operator reconciles every claim at once; give a repeat time to show.
        wait_until(
            lambda: _reconciles(operator) >= 1, timeout=10,
            what="the restarted operator to reconcile",
        )  # fmt: skip
        time.sleep(3)
        waiting = [e for e in events_for(cluster, namespace, "patient") if e["reason"] == reason]
        assert [e.get("count") for e in waiting] == [1]
        seeded = [
            r for r in operator.log_records()
            if r.get("message") == "cannot list Events: each waiting claim gets its current "
            "Event once more"
        ]  # fmt: skip
        assert seeded == []
        # Still reconciled by the restarted operator: the NAD unblocks it.
        apply(cluster, nad_manifest("later", namespace, sriov_conf("later")))
        wait_allocated(cluster, namespace, "patient", timeout=8)


def _no_device_message(cluster: DevCluster, body: dict[str, Any], device_class: str) -> str:
    """What the core says for ``body`` when every VF of the test's slices is taken."""
    slices = cluster.kubectl_json(
        "get", "resourceslices", "-l", f"sriov-dra-test-group={device_class}"
    )["items"]
    classes = {device_class: cluster.kubectl_json("get", "deviceclass", device_class)}
    pools = pools_from_slices(slices, driver=DRIVER_NAME)
    taken = {d.key for pool in pools for d in pool.devices}
    with pytest.raises(NoDeviceAvailable) as info:
        allocate(body, device_classes=classes, pools=pools, in_use=taken, driver=DRIVER_NAME)
    return info.value.describe()


def test_burst_of_50_claims_on_40_vfs_then_a_deleted_claim_frees_its_vf(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=20) as device_class:
        create(cluster, *burst_claims(namespace, device_class, 50))
        items = settled(cluster, namespace, allocated=40, waiting=10)
        holders = holders_of(items)
        assert len(holders) == 40
        assert all(len(names) == 1 for names in holders.values()), holders
        refused = next(b for b in items if not allocated_devices(b))
        [event] = [
            e
            for e in events_for(cluster, namespace, refused["metadata"]["name"])
            if e["reason"] == "NoDeviceAvailable"
        ]
        assert event["type"] == "Warning"
        assert event["message"] == _no_device_message(cluster, refused, device_class)

        victim = next(b for b in items if allocated_devices(b))
        [device] = allocated_devices(victim)
        cluster.kubectl(
            "delete", "resourceclaim", victim["metadata"]["name"], "-n", namespace, "--wait=false"
        )
        # Not released by the agent yet: the VF stays with the deleted claim.
        time.sleep(3)
        still = claim(cluster, namespace, victim["metadata"]["name"])
        assert still is not None and allocated_devices(still) == [device]
        assert sum(1 for b in claims(cluster, namespace) if allocated_devices(b)) == 40

        release(cluster, namespace, still)
        wait_until(
            lambda: claim(cluster, namespace, victim["metadata"]["name"]) is None,
            timeout=30,
            what="the released claim to be gone",
        )
        items = wait_until(
            lambda: (lambda xs: xs if sum(1 for b in xs if allocated_devices(b)) == 40 else None)(
                claims(cluster, namespace)
            ),
            timeout=30,
            what="a waiting claim to get the freed VF",
        )
        holders = holders_of(items)
        assert conflict_events(cluster, namespace) == []
        assert device in holders and len(holders[device]) == 1
        assert holders[device][0] != victim["metadata"]["name"]
        assert len(holders) == 40 and all(len(n) == 1 for n in holders.values())


def test_conflicting_allocation_keeps_the_older_claim_and_reallocates_the_other(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        apply(cluster, claim_manifest("first", namespace, device_class, vfconfig()))
        first = wait_allocated(cluster, namespace, "first")
        # Someone else (think: the scheduler racing us) allocates the same VF to a newer claim
        # of a class we do not allocate ourselves.
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
            "metadata": {"name": f"{namespace}-foreign",
                         "labels": {"sriov-dra-test-group": f"{namespace}-vfs"}},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == 'other.example'"}}]},
        }))  # fmt: skip
        apply(cluster, claim_manifest("second", namespace, f"{namespace}-foreign"))
        allocation = dict(first["status"]["allocation"])
        allocation["devices"] = {"results": [
            dict(r, request="vf") for r in allocation["devices"]["results"]
        ]}  # fmt: skip
        cluster.kubectl(
            "patch", "resourceclaim", "second", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"allocation": allocation}}),
        )  # fmt: skip
        conflict_first = wait_for_event(cluster, namespace, "first", "AllocationConflict")
        conflict_second = wait_for_event(cluster, namespace, "second", "AllocationConflict")
        assert "this claim keeps it because it is older" in conflict_first["message"]
        assert "this claim's allocation is cleared" in conflict_second["message"]
        wait_until(
            lambda: not allocated_devices(claim(cluster, namespace, "second") or {}),
            timeout=30, what="the newer claim's allocation to be cleared",
        )  # fmt: skip
        assert allocated_devices(claim(cluster, namespace, "first") or {}) == allocated_devices(
            first
        )


def test_a_claim_with_a_pending_pod_is_left_to_the_scheduler(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        # Fits no node: the scheduler keeps it pending and never allocates.
        apply(cluster, _pending_pod(namespace, "waiter", "held"))
        time.sleep(1)  # the pod is seen before the claim exists
        apply(cluster, claim_manifest("held", namespace, device_class, vfconfig()))
        time.sleep(3)
        body = claim(cluster, namespace, "held")
        assert body is not None and allocated_devices(body) == []
        assert FINALIZER not in (body["metadata"].get("finalizers") or [])
        cluster.kubectl("delete", "pod", "waiter", "-n", namespace, "--grace-period=0", "--force")
        wait_allocated(cluster, namespace, "held")


def test_a_claim_the_scheduler_allocated_is_adopted_and_outlives_its_pod(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1) as device_class:
        # The pod comes first (as when claim and pod are applied together and the
        # scheduler wins the race): kube-scheduler allocates the claim itself.
        pod = _pending_pod(namespace, "first", "raced")
        del pod["spec"]["nodeSelector"]
        apply(cluster, pod)
        time.sleep(1)
        apply(cluster, claim_manifest("raced", namespace, device_class, vfconfig()))

        def adopted() -> dict[str, Any] | None:
            body = claim(cluster, namespace, "raced")
            finalizers = (body or {}).get("metadata", {}).get("finalizers") or []
            return body if body and FINALIZER in finalizers else None

        body = wait_until(adopted, timeout=20, what="the operator to adopt the claim")
        assert KUBE_DELETE_PROTECTION not in body["metadata"]["finalizers"]
        allocation = body["status"]["allocation"]
        node = allocation["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        assert body["metadata"]["labels"][NODE_LABEL] == node
        records = allocation_record.decode(body["metadata"]["annotations"][ALLOCATION_ANNOTATION])
        assert [(DRIVER_NAME, r.pool, r.device) for r in records] == allocated_devices(body)
        assert [r.if_name for r in records] == ["vfnet0"]
        event = wait_for_event(cluster, namespace, "raced", "Adopted")
        assert event["type"] == "Normal"
        assert f"removed finalizer {KUBE_DELETE_PROTECTION}" in event["message"]
        reserved = body["status"].get("reservedFor") or []
        assert [r["name"] for r in reserved] == ["first"]

        cluster.kubectl("delete", "pod", "first", "-n", namespace, "--grace-period=0", "--force")
        after = wait_until(
            lambda: (lambda b: b if b and not b["status"].get("reservedFor") else None)(
                claim(cluster, namespace, "raced")
            ),
            timeout=15,
            what="reservedFor to empty after the pod went",
        )
        time.sleep(2)  # the claim controller acts within ~0.1 s (docs/platform-facts.md)
        after = claim(cluster, namespace, "raced")
        assert after is not None
        assert after["status"]["allocation"] == allocation


def _pending_pod(namespace: str, name: str, claim_name: str | None = None) -> dict[str, Any]:
    """A pod that fits no node, so it stays pending (and is never done)."""
    spec: dict[str, Any] = {
        "nodeSelector": {"sriov-dra-test/nowhere": "true"},
        "containers": [{"name": "c", "image": "example.invalid/none"}],
    }
    if claim_name:
        spec["containers"][0]["resources"] = {"claims": [{"name": "vf"}]}
        spec["resourceClaims"] = [{"name": "vf", "resourceClaimName": claim_name}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}  # fmt: skip


def test_allocation_cleared_by_the_scheduler_is_not_fought(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        apply(cluster, claim_manifest("taken-back", namespace, device_class, vfconfig()))
        wait_allocated(cluster, namespace, "taken-back")
        # What kube-scheduler's PostFilter writes when the claim's pod fits no node.
        cluster.kubectl(
            "patch", "resourceclaim", "taken-back", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", '{"status": {"allocation": null, "reservedFor": null}}',
        )  # fmt: skip
        unmarked = wait_until(
            lambda: (lambda b: b if b and not (b["metadata"].get("finalizers") or []) else None)(
                claim(cluster, namespace, "taken-back")
            ),
            timeout=10,
            what="our marks to go from the claim the scheduler took back",
        )
        assert allocated_devices(unmarked) == []
        assert NODE_LABEL not in (unmarked["metadata"].get("labels") or {})
        assert ALLOCATION_ANNOTATION not in (unmarked["metadata"].get("annotations") or {})
        event = wait_for_event(cluster, namespace, "taken-back", "AllocationClearedByScheduler")
        assert event["type"] == "Normal"
        assert f"for at least {YIELD} s" in event["message"]
        # After --yield-seconds with no pod pending on it, the claim is ours again.
        wait_allocated(cluster, namespace, "taken-back", timeout=YIELD + 20)


def test_a_deleted_claim_keeps_its_vf_while_a_pod_holds_it(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1) as device_class:
        apply(
            cluster,
            claim_manifest("in-use", namespace, device_class, vfconfig()),
            claim_manifest("other", namespace, device_class, vfconfig()),
        )
        body = wait_allocated(cluster, namespace, "in-use")
        wait_allocated(cluster, namespace, "other")
        apply(cluster, _pending_pod(namespace, "holder"))
        pod = cluster.kubectl_json("get", "pod", "holder", "-n", namespace)
        reserved = [{"resource": "pods", "name": "holder", "uid": pod["metadata"]["uid"]}]
        cluster.kubectl(
            "patch", "resourceclaim", "in-use", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"reservedFor": reserved}}),
        )  # fmt: skip
        cluster.kubectl("delete", "resourceclaim", "in-use", "-n", namespace, "--wait=false")
        release(cluster, namespace, body)
        # Released by the agent, but a pod still holds it: the VF stays with the claim.
        apply(cluster, claim_manifest("next", namespace, device_class, vfconfig()))
        wait_for_event(cluster, namespace, "next", "NoDeviceAvailable")
        time.sleep(2)  # time for a wrong release to show
        held = claim(cluster, namespace, "in-use")
        assert held is not None and allocated_devices(held) == allocated_devices(body)
        # The pod lets go: now the VF goes to the waiting claim.
        cluster.kubectl(
            "patch", "resourceclaim", "in-use", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", '{"status": {"reservedFor": null}}',
        )  # fmt: skip
        wait_until(lambda: claim(cluster, namespace, "in-use") is None, timeout=30,
                   what="the released claim to be gone")  # fmt: skip
        moved = wait_allocated(cluster, namespace, "next")
        assert allocated_devices(moved) == allocated_devices(body)
