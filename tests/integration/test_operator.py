"""The operator as a process against the real control plane.

ResourceSlices are created by the tests for the simulated nodes; the tests play
the node agent when a deleted claim's VF must be reported released. Each test
uses its own namespace and its own VFs (a DeviceClass that selects only them),
so tests never take each other's VFs.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
    create_unchecked,
    device_class_manifest,
    events_for,
    expect_event,
    failures_by_reason,
    holders_of,
    load_seed,
    nad_manifest,
    operator_kubeconfig,
    release,
    release_all,
    settled,
    simulated_vfs,
    slice_manifest,
    sriov_conf,
    unit_tables,
    vfconfig,
    wait_allocated,
    wait_for_event,
)
from sriov_dra import allocation_record
from sriov_dra.allocator import allocate
from sriov_dra.constants import (
    ALLOCATED_CONDITION,
    ALLOCATION_ANNOTATION,
    DRIVER_NAME,
    FINALIZER,
    KUBE_DELETE_PROTECTION,
    NODE_LABEL,
    RELEASED_CONDITION,
)
from sriov_dra.device_pools import pools_from_slices
from sriov_dra.errors import NoDeviceAvailable
from sriov_dra.nad import device_id_replaced, parse_nad_config, unrun_plugins_warning
from sriov_dra.naming import pci_address
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.kwok_nodes import node_manifest
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
    assert set(body.get("status") or {}) <= {"allocation", "devices"}


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

        # Explained in the allocation's own write: a condition on the VF's entry, no Event.
        [entry] = body["status"]["devices"]
        assert (entry["driver"], entry["pool"], entry["device"]) == (
            DRIVER_NAME, result["pool"], result["device"]
        )  # fmt: skip
        [condition] = entry["conditions"]
        assert (condition["type"], condition["status"]) == (ALLOCATED_CONDITION, "True")
        assert condition["message"] == (
            f"allocated VF {record.pci_address} (vfIndex {record.vf_index}, device "
            f"{record.pool}/{record.device}) of PF simpf0 as net1 for NAD "
            f"{namespace}/vf-resourceclaim-test on node {node}"
        )
        assert [e["reason"] for e in events_for(cluster, namespace, "static-vf-claim")] == []
        described = cluster.kubectl(
            "describe", "resourceclaim", "static-vf-claim", "-n", namespace
        ).stdout
        assert ALLOCATED_CONDITION in described and record.pci_address in described
        assert f"on node {node}" in described
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


VFCONFIG_TABLES = unit_tables("test_vfconfig")
NAD_TABLES = unit_tables("test_nad")
assert VFCONFIG_TABLES.FIELD == CONFIG_FIELD, "the claims below carry one config entry, [0]"


@dataclass(frozen=True)
class BadInput:
    """One row of a unit table, as a claim (and its NAD) and what the operator must say."""

    claim: str
    parameters: Any
    reason: str
    message: str
    nad: str = ""
    """Name of the NAD the claim names, created before the claims with ``nad_config``."""
    nad_config: str = ""


def bad_inputs(namespace: str) -> list[BadInput]:
    """Every bad VfConfig, NAD reference and NAD of the unit tables, plus a missing NAD."""
    rows = []
    for row in VFCONFIG_TABLES.BAD:
        raw, message = row.values
        rows.append(BadInput(f"vfconfig-{row.id}", raw, "InvalidVfConfig", message))
    for row in VFCONFIG_TABLES.NAD_REF_BAD:
        cfg, _allowed, message = row.values
        parameters = vfconfig(**cfg.model_dump(by_alias=True, exclude_defaults=True))
        # The table's claims live in namespace "ns"; this operator allows no other namespace.
        message = message.replace("'ns'", f"'{namespace}'")
        rows.append(BadInput(f"nadref-{row.id}", parameters, "InvalidVfConfig", message))
    table_nad = f"NetworkAttachmentDefinition {NAD_TABLES.NAD} "
    for row in NAD_TABLES.BAD:
        config, message = row.values
        nad = f"bad-{row.id}"
        message = message.replace(table_nad, f"NetworkAttachmentDefinition {namespace}/{nad} ")
        rows.append(
            BadInput(
                f"nad-{row.id}",
                vfconfig(netAttachDefName=nad),
                "InvalidNetworkAttachmentDefinition",
                message,
                nad=nad,
                nad_config=config,
            )
        )
    rows.append(
        BadInput(
            "nad-missing",
            vfconfig(netAttachDefName="absent"),
            "NetworkAttachmentDefinitionNotFound",
            f"netAttachDefName: NetworkAttachmentDefinition {namespace}/absent named by request "
            f"'vf' does not exist; fix: create NetworkAttachmentDefinition absent in namespace "
            f"{namespace} (the claim is allocated as soon as it exists) or correct "
            "netAttachDefName",
        )
    )
    return rows


def test_every_bad_input_of_the_unit_tables_gets_its_event_and_no_allocation(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    rows = bad_inputs(namespace)
    refused_by_apiserver = [r for r in rows if not isinstance(r.parameters, dict)]
    told = [r for r in rows if isinstance(r.parameters, dict)]
    failures_before = failures_by_reason(operator.metrics())
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1) as device_class:
        # NADs first; the probe claim, allocated, shows the operator has seen them all
        # (one watch, in order), so no claim below is first told its NAD is missing.
        nads = [nad_manifest(r.nad, namespace, r.nad_config) for r in rows if r.nad_config]
        create(cluster, *nads, nad_manifest("probe", namespace, sriov_conf("probe")))
        apply(cluster, claim_manifest("probe", namespace, device_class,
                                      vfconfig(netAttachDefName="probe")))  # fmt: skip
        wait_allocated(cluster, namespace, "probe")

        refusals = create_unchecked(
            cluster,
            *(claim_manifest(r.claim, namespace, device_class, r.parameters) for r in rows),
        )
        for row in refused_by_apiserver:
            assert (
                f'The ResourceClaim "{row.claim}" is invalid: {CONFIG_FIELD}: Invalid value: '
                '"<value omitted>": must be a valid JSON object'
            ) in refusals

        def all_told() -> dict[str, list[dict[str, Any]]] | None:
            events = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
            by_claim: dict[str, list[dict[str, Any]]] = {}
            for event in events:
                by_claim.setdefault(event["involvedObject"]["name"], []).append(event)
            return by_claim if all(r.claim in by_claim for r in told) else None

        by_claim = wait_until(all_told, timeout=60, what=f"an Event on each of {len(told)} claims")
        bodies = {b["metadata"]["name"]: b for b in claims(cluster, namespace)}
        assert sorted(bodies) == sorted([r.claim for r in told] + ["probe"])
        for row in told:
            said = [(e["type"], e["reason"], e["message"]) for e in by_claim[row.claim]]
            assert said == [("Warning", row.reason, row.message)], row.claim
            body = bodies[row.claim]
            assert allocated_devices(body) == [], row.claim
            assert FINALIZER not in (body["metadata"].get("finalizers") or []), row.claim
            assert NODE_LABEL not in (body["metadata"].get("labels") or {}), row.claim
            assert_untouched_by_kopf(body)

        # Counted once per claim, by the reason of its Event.
        expected = dict(collections.Counter(r.reason for r in told))

        def grown() -> dict[str, float]:
            now = failures_by_reason(operator.metrics())
            return {k: now.get(k, 0) - failures_before.get(k, 0) for k in expected}

        wait_until(lambda: grown() == expected, timeout=10, what=f"failures_total += {expected}")


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
        expect_event(cluster, namespace, "early", "DeviceClassNotFound", warning=True, message=(
            f"spec.devices.requests[0].exactly.deviceClassName: DeviceClass '{late_class}' "
            f"does not exist; fix: create DeviceClass '{late_class}' with a selector for driver "
            f"{DRIVER_NAME}, or correct the name (the class this project ships is "
            f"'{DRIVER_NAME}': kubectl apply -f manifests/base/deviceclass.yaml); "
                    "the claim is "
            "allocated as soon as the class exists"
        ))  # fmt: skip
        # The VFs are published already: only the DeviceClass watch can unblock the claim,
        # well within the 10-60 s retry delays. (Labelled with the group: cleaned up with it.)
        apply(cluster, device_class_manifest(late_class, group))
        wait_allocated(cluster, namespace, "early", timeout=8)
        reasons = sorted(e["reason"] for e in events_for(cluster, namespace, "early"))
        assert reasons == ["DeviceClassNotFound"]


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


def test_a_nad_whose_chained_plugins_never_run_is_warned_about_and_allocated(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    config = {
        "cniVersion": "1.0.0",
        "name": "chained",
        "plugins": [sriov_conf("chained", vlan=10), {"type": "tuning", "mtu": 9000},
                    {"type": "sbr"}],
    }  # fmt: skip
    warning = unrun_plugins_warning(
        parse_nad_config(json.dumps(config), nad=f"{namespace}/chained")
    )
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1) as device_class:
        apply(
            cluster,
            nad_manifest("chained", namespace, config),
            claim_manifest(
                "chained", namespace, device_class, vfconfig(netAttachDefName="chained")
            ),
        )
        wait_allocated(cluster, namespace, "chained")
        said = [(e["type"], e["reason"], e["message"])
                for e in events_for(cluster, namespace, "chained")]  # fmt: skip
        assert ("Warning", "NadPluginsNotRun", warning) in said
        assert sorted(reason for _, reason, _ in said) == ["NadPluginsNotRun"]


def test_a_classic_nad_with_a_device_id_is_accepted_and_the_claim_told_its_vf_is_used(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    config = {**sriov_conf("classic", vlan=10), "deviceID": "0000:5e:00.9"}
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1) as device_class:
        apply(
            cluster,
            nad_manifest("classic", namespace, config),
            claim_manifest(
                "classic", namespace, device_class, vfconfig(netAttachDefName="classic")
            ),
        )
        ((_, _, device),) = allocated_devices(wait_allocated(cluster, namespace, "classic"))
        wait_for_event(cluster, namespace, "classic", "NadDeviceIdReplaced")
        told = device_id_replaced(
            parse_nad_config(json.dumps(config), nad=f"{namespace}/classic"),
            "vf",
            pci_address(device),
        )
        said = [(e["type"], e["reason"], e["message"])
                for e in events_for(cluster, namespace, "classic")]  # fmt: skip
        assert ("Normal", "NadDeviceIdReplaced", told) in said
        assert sorted(reason for _, reason, _ in said) == ["NadDeviceIdReplaced"]


@pytest.mark.parametrize(
    "newer_is_ours_and_in_use",
    [False, True],
    ids=["newer-foreign-claim-loses", "newer-claim-of-ours-in-use-wins"],
)
def test_a_vf_in_two_claims_stays_with_the_one_in_use_else_the_older(
    cluster: DevCluster,
    operator: OperatorProcess,
    clean_claims: str,
    newer_is_ours_and_in_use: bool,
) -> None:
    namespace = clean_claims
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=2) as device_class:
        apply(cluster, claim_manifest("first", namespace, device_class, vfconfig()))
        first = wait_allocated(cluster, namespace, "first")
        [device] = allocated_devices(first)
        # Someone else (think: the scheduler racing us) allocates the same VF to a newer claim
        # (created in the same second maybe: the names order them then): one of a class we
        # do not allocate, or one of ours waiting for its NAD, for a pod.
        allocation = dict(first["status"]["allocation"])
        allocation["devices"] = {"results": allocation["devices"]["results"]}
        status: dict[str, Any] = {"allocation": allocation}
        if newer_is_ours_and_in_use:
            apply(cluster, claim_manifest("second", namespace, device_class,
                                          vfconfig(netAttachDefName="later")))  # fmt: skip
            wait_for_event(cluster, namespace, "second", "NetworkAttachmentDefinitionNotFound")
            apply(cluster, _pending_pod(namespace, "user"))
            pod = cluster.kubectl_json("get", "pod", "user", "-n", namespace)
            status["reservedFor"] = [
                {"resource": "pods", "name": "user", "uid": pod["metadata"]["uid"]}
            ]
        else:
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                "metadata": {"name": f"{namespace}-foreign",
                             "labels": {"sriov-dra-test-group": f"{namespace}-vfs"}},
                "spec": {"selectors": [
                    {"cel": {"expression": "device.driver == 'other.example'"}}]},
            }))  # fmt: skip
            apply(cluster, claim_manifest("second", namespace, f"{namespace}-foreign"))
        cluster.kubectl(
            "patch", "resourceclaim", "second", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip

        keeper, loser = ("second", "first") if newer_is_ours_and_in_use else ("first", "second")
        why = "because a pod uses it" if newer_is_ours_and_in_use else "because it is older"
        shared = f"device {device[1]}/{device[2]} (driver {DRIVER_NAME}) is also allocated to"
        expect_event(
            cluster,
            namespace,
            keeper,
            "AllocationConflict",
            warning=True,
            message=f"{shared} {namespace}/{loser}; this claim keeps it {why}",
        )
        expect_event(cluster, namespace, loser, "AllocationConflict", warning=True, message=(
            f"{shared} {namespace}/{keeper}, which keeps it; this claim's allocation is cleared "
            "and a different VF will be allocated"
        ))  # fmt: skip
        moved = wait_until(
            lambda: (lambda b: b if b and device not in allocated_devices(b) else None)(
                claim(cluster, namespace, loser)
            ),
            timeout=30, what=f"the VF to leave {loser}",
        )  # fmt: skip
        assert allocated_devices(claim(cluster, namespace, keeper) or {}) == [device]
        if not newer_is_ours_and_in_use:
            assert allocated_devices(moved) == []  # not ours to allocate again
            return
        # Ours: allocated again, to another free VF, with records to match.
        moved = wait_allocated(cluster, namespace, loser)
        [other] = allocated_devices(moved)
        assert other != device
        [record] = allocation_record.decode(moved["metadata"]["annotations"][ALLOCATION_ANNOTATION])
        assert (record.pool, record.device) == other[1:]
        cluster.kubectl(
            "patch", "resourceclaim", "second", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", '{"status": {"reservedFor": null}}',
        )  # fmt: skip


NODES_RULE = '{apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch"]}'


def test_a_deleted_claim_waits_for_its_agent_and_goes_with_its_node(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    denied = "not allowed to get, list and watch Nodes"
    assert not [r for r in operator.log_records() if str(r.get("message")).startswith(denied)], (
        f"the operator may not watch Nodes: manifests/base/rbac-operator.yaml needs {NODES_RULE}"
    )
    node = f"gone-{namespace[-6:]}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(node_manifest(node)))
    try:
        with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1, nodes=[node]) as group:
            _allocated_on_a_removed_node(cluster, namespace, group, node)
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def _allocated_on_a_removed_node(
    cluster: DevCluster, namespace: str, group: str, node: str
) -> None:
    """The claim waits for the agent of ``node``, then goes when ``node`` is deleted."""
    apply(cluster, claim_manifest("orphan", namespace, group, vfconfig()))
    body = wait_allocated(cluster, namespace, "orphan")
    [(_, pool, device)] = allocated_devices(body)
    uid = body["metadata"]["uid"]
    cluster.kubectl("delete", "resourceclaim", "orphan", "-n", namespace, "--wait=false")

    expect_event(cluster, namespace, "orphan", "AwaitingRelease", warning=False, message=(
        f"the claim is deleted; device {pool}/{device} stays allocated until the sriov-dra "
        f"agent on node {node} has detached and reset it and set condition "
        f"{RELEASED_CONDITION} on its status.devices entries of claim {uid}; then the "
        f"allocation and finalizer {FINALIZER} go; fix: check the agent pod on node {node} "
        f"(kubectl -n sriov-dra get pods -o wide --field-selector spec.nodeName={node}) and "
        f"its log; if node {node} is gone for good, delete its Node object (kubectl delete "
        f"node {node}) and the operator releases the claim without the agent"
    ))  # fmt: skip
    still = claim(cluster, namespace, "orphan")
    assert still is not None and allocated_devices(still) == [(DRIVER_NAME, pool, device)]

    cluster.kubectl("delete", "node", node)
    wait_until(lambda: claim(cluster, namespace, "orphan") is None, timeout=30,
               what="the claim of the removed node to be gone")  # fmt: skip
    expect_event(cluster, namespace, "orphan", "ReleasedWithoutAgent", warning=True, message=(
        f"node {node} no longer exists (its Node object was deleted), so no node agent will "
        f"release device {pool}/{device}: the VF went with the node; released without the "
        f"agent: allocation cleared, finalizer {FINALIZER} removed"
    ))  # fmt: skip


def test_a_pool_being_republished_is_waited_for_then_allocated(
    cluster: DevCluster, operator: OperatorProcess, clean_claims: str
) -> None:
    namespace = clean_claims
    group = f"{namespace}-vfs"
    node = cluster.node_names[0]
    pool = f"{node}.{group}"
    halves = [slice_manifest(f"{group}-{i}", node, pool, group, 1, bus_group=i) for i in (0, 1)]
    for half in halves:
        half["spec"]["pool"]["resourceSliceCount"] = 2
    apply(cluster, device_class_manifest(group, group), halves[0])
    try:
        apply(cluster, claim_manifest("patient", namespace, group, vfconfig()))
        expect_event(cluster, namespace, "patient", "NoDeviceAvailable", warning=True, message=(
            'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
            f"not counted until complete: pool {pool} is being republished (1 of 2 slices); "
            "fix: no published VF matches: check the DeviceClass and request selectors, or "
            "publish matching VFs; or just wait: the claim is retried by itself as soon as the "
            "pools named are complete"
        ))  # fmt: skip
        # Only the slice watch can allocate it this soon (no timer retries a waiting claim).
        apply(cluster, halves[1])
        wait_allocated(cluster, namespace, "patient", timeout=8)
    finally:
        cluster.kubectl(
            "delete", "resourceslices,deviceclasses", "-l", f"sriov-dra-test-group={group}",
            "--wait=false", check=False,
        )  # fmt: skip
