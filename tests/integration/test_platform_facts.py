"""Platform facts the design stands on, measured against a real Kubernetes 1.34.

Each test pins one behaviour of kube-apiserver, kube-scheduler or the
resourceclaim controller (kube-controller-manager) that our static-claim design
relies on. What they observed, with timings, is written up in
docs/platform-facts.md; the ``FACT`` lines they print (pytest -s) are the source.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sriov_dra.constants import DRIVER_NAME, KUBE_DELETE_PROTECTION
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAD_CRD = ROOT / "crds" / "network-attachment-definition.yaml"
DEVICE_CLASS = ROOT / "manifests" / "base" / "deviceclass.yaml"
SEED_EXAMPLE = ROOT / "manifests" / "examples" / "resourceclaim-vf.yaml"

VF_CONFIG = {
    "apiVersion": "sriovnetwork.k8snetworkplumbingwg.io/v1alpha1",
    "kind": "VfConfig",
    "ifName": "net1",
    "netAttachDefName": "vf-net",
}


def fact(text: str) -> None:
    """An observation for docs/platform-facts.md (visible with pytest -s)."""
    print(f"FACT {text}")


def claim_manifest(name: str, *, finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
    """A static claim for one VF, shaped like the seed's."""
    metadata: dict[str, Any] = {"name": name}
    if finalizers:
        metadata["finalizers"] = list(finalizers)
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": metadata,
        "spec": {
            "devices": {
                "requests": [{"name": "vf", "exactly": {"deviceClassName": DRIVER_NAME}}],
                "config": [
                    {"requests": ["vf"], "opaque": {"driver": DRIVER_NAME, "parameters": VF_CONFIG}}
                ],
            }
        },
    }


def allocation_for(node: str, device: str = "vf-0") -> dict[str, Any]:
    """status.allocation as an external allocator (our operator) writes it: pinned to ``node``."""
    return {
        "devices": {
            "results": [{"request": "vf", "driver": DRIVER_NAME, "pool": node, "device": device}],
            "config": [
                {
                    "source": "FromClaim",
                    "requests": ["vf"],
                    "opaque": {"driver": DRIVER_NAME, "parameters": VF_CONFIG},
                }
            ],
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }


def pod_manifest(name: str, claim: str, *, node_selector: str | None = None) -> dict[str, Any]:
    """A pod using ``claim`` by name (resourceClaimName), optionally pinned to a node by label."""
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "c",
                "image": "example.invalid/idle",
                "resources": {"claims": [{"name": "vf"}]},
            }
        ],
        "resourceClaims": [{"name": "vf", "resourceClaimName": claim}],
    }
    if node_selector:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node_selector}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


class Claims:
    """The test's view of one namespace: create claims/pods, write allocations as an allocator."""

    def __init__(self, cluster: DevCluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        # Allocation is written with a ServiceAccount holding only claim + claim-status
        # rights, as the operator will: proof that nothing scheduler-only is needed.
        cluster.kubectl("create", "serviceaccount", "allocator", "-n", namespace)
        cluster.kubectl(
            "create", "role", "claim-allocator", "-n", namespace,
            "--verb=get,list,watch,update,patch",
            "--resource=resourceclaims.resource.k8s.io,resourceclaims.resource.k8s.io/status",
        )  # fmt: skip
        cluster.kubectl(
            "create", "rolebinding", "allocator", "-n", namespace,
            "--role=claim-allocator", f"--serviceaccount={namespace}:allocator",
        )  # fmt: skip
        self.allocator_kubeconfig = cluster.kubeconfig_for_service_account(namespace, "allocator")

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(manifest)
        doc["metadata"]["namespace"] = self.ns
        out = self.cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(doc))
        created: dict[str, Any] = json.loads(out.stdout)
        return created

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.cluster.kubectl_json("get", kind, name, "-n", self.ns)
        return obj

    def allocate(self, claim: str, allocation: dict[str, Any]) -> None:
        patch = json.dumps({"status": {"allocation": allocation}})
        self.cluster.kubectl(
            "patch", "resourceclaim", claim, "-n", self.ns,
            "--subresource=status", "--type=merge", "-p", patch,
            kubeconfig=self.allocator_kubeconfig,
        )  # fmt: skip

    def delete_pod(self, name: str) -> None:
        # No kubelet confirms graceful termination on a simulated node.
        self.cluster.kubectl("delete", "pod", name, "-n", self.ns, "--grace-period=0", "--force")

    def wait_scheduled(self, pod: str) -> tuple[str, float]:
        t0 = time.monotonic()
        node: str = wait_until(
            lambda: self.get("pod", pod)["spec"].get("nodeName"),
            timeout=60,
            what=f"pod {self.ns}/{pod} to be bound to a node",
        )
        return node, time.monotonic() - t0

    def reserved_uids(self, claim: str) -> list[str]:
        return [r["uid"] for r in self.get("resourceclaim", claim)["status"].get("reservedFor", [])]

    def wait_deallocated(self, claim: str, what: str) -> dict[str, Any]:
        """Wait until status.allocation is gone; return the claim as it is then."""

        def deallocated() -> dict[str, Any] | None:
            obj = self.get("resourceclaim", claim)
            return obj if obj["status"].get("allocation") is None else None

        return wait_until(deallocated, timeout=60, what=what)

    def events_for(self, kind: str, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.kubectl_json(
            "get", "events", "-n", self.ns,
            f"--field-selector=involvedObject.kind={kind},involvedObject.name={name}",
        )["items"]  # fmt: skip
        return items


def unschedulable_message(cluster: DevCluster, namespace: str, pod: str) -> str | None:
    """The PodScheduled=False message of a pod, None while there is none."""
    conditions = cluster.kubectl_json("get", "pod", pod, "-n", namespace)["status"].get(
        "conditions", []
    )
    for condition in conditions:
        if condition["type"] == "PodScheduled" and condition["status"] == "False":
            message: str = condition.get("message", "")
            return message
    return None


@pytest.fixture
def claims(cluster: DevCluster, namespace: str) -> Claims:
    cluster.kubectl("apply", "-f", str(DEVICE_CLASS))
    return Claims(cluster, namespace)


# --- (a) the API is there and our manifests apply --------------------------------------------


def test_resource_k8s_io_v1_is_served(cluster: DevCluster) -> None:
    versions = cluster.kubectl("api-versions").stdout.split()
    assert "resource.k8s.io/v1" in versions
    # Beta and alpha DRA versions stay opt-in in 1.34; the dev cluster opts in to one:
    # v1alpha3 (DeviceTaintRule), which the scheduler and the controller manager watch
    # once the DRADeviceTaints gate is on (the agent taints VFs whose PF link is down).
    assert [v for v in versions if v.startswith("resource.k8s.io/")] == [
        "resource.k8s.io/v1",
        "resource.k8s.io/v1alpha3",
    ]
    out = cluster.kubectl("api-resources", "--api-group=resource.k8s.io", "-o", "name").stdout
    assert sorted(out.split()) == [
        "deviceclasses.resource.k8s.io",
        "devicetaintrules.resource.k8s.io",
        "resourceclaims.resource.k8s.io",
        "resourceclaimtemplates.resource.k8s.io",
        "resourceslices.resource.k8s.io",
    ]
    version = cluster.kubectl_json("version")["serverVersion"]
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "34", "v1.34.4")
    fact(f"served DRA versions: {[v for v in versions if v.startswith('resource.k8s.io/')]}")


def test_device_class_slice_and_claim_round_trip(claims: Claims, namespace: str) -> None:
    cluster = claims.cluster
    node = cluster.node_names[0]
    class_name = f"{namespace}.example.com"
    device_class = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": class_name},
        "spec": {
            "selectors": [{"cel": {"expression": f"device.driver == '{DRIVER_NAME}'"}}],
            "config": [{"opaque": {"driver": DRIVER_NAME, "parameters": {"mtu": 9000}}}],
        },
    }
    slice_name = f"{namespace}-{node}"
    resource_slice = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": slice_name},
        "spec": {
            "driver": DRIVER_NAME,
            "nodeName": node,
            "pool": {"name": f"{namespace}-pool", "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {
                    "name": "0000-3b-02-2",
                    "attributes": {
                        f"{DRIVER_NAME}/pfName": {"string": "ens1f0"},
                        f"{DRIVER_NAME}/vfID": {"int": 2},
                        f"{DRIVER_NAME}/simulated": {"bool": True},
                    },
                }
            ],
        },
    }
    try:
        for doc in (device_class, resource_slice):
            cluster.kubectl("create", "-f", "-", input=json.dumps(doc))
        got_class = cluster.kubectl_json("get", "deviceclass", class_name)
        got_slice = cluster.kubectl_json("get", "resourceslice", slice_name)
        assert got_class["spec"] == device_class["spec"]
        assert got_slice["spec"] == resource_slice["spec"]
        created = claims.apply(claim_manifest("round-trip"))
        got_claim = claims.get("resourceclaim", "round-trip")
        assert got_claim["metadata"]["uid"] == created["metadata"]["uid"]
        request = got_claim["spec"]["devices"]["requests"][0]
        # The server fills in the defaults; everything we sent comes back unchanged.
        assert request == {
            "name": "vf",
            "exactly": {"deviceClassName": DRIVER_NAME, "allocationMode": "ExactCount", "count": 1},
        }
        assert got_claim["spec"]["devices"]["config"] == [
            {"requests": ["vf"], "opaque": {"driver": DRIVER_NAME, "parameters": VF_CONFIG}}
        ]
        assert got_claim.get("status", {}) == {}
    finally:
        cluster.kubectl("delete", "resourceslice", slice_name, "--ignore-not-found")
        cluster.kubectl("delete", "deviceclass", class_name, "--ignore-not-found")


def test_shipped_crd_deviceclass_and_seed_example_apply(cluster: DevCluster) -> None:
    cluster.kubectl("apply", "-f", str(NAD_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/network-attachment-definitions.k8s.cni.cncf.io",
    )  # fmt: skip
    cluster.kubectl("apply", "-f", str(DEVICE_CLASS))
    docs = [d for d in yaml.safe_load_all(SEED_EXAMPLE.read_text()) if d]
    seed_ns = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    try:
        out = cluster.kubectl("apply", "-f", str(SEED_EXAMPLE)).stdout
        assert out.splitlines() == [
            f"namespace/{seed_ns} created",
            f"networkattachmentdefinition.k8s.cni.cncf.io/{seed_ns} created",
            "resourceclaim.resource.k8s.io/static-vf-claim created",
            "pod/pod0 created",
        ]
        nad = cluster.kubectl_json("get", "net-attach-def", seed_ns, "-n", seed_ns)
        assert json.loads(nad["spec"]["config"])["type"] == "sriov"
        claim = cluster.kubectl_json("get", "resourceclaim", "static-vf-claim", "-n", seed_ns)
        assert claim["spec"]["devices"]["config"][0]["opaque"]["parameters"]["kind"] == "VfConfig"
        # Re-applying is harmless although kubectl says "configured" for the claim:
        # client-side apply re-sends spec.devices.requests (an atomic list) without
        # the server-filled defaults; the server defaults it back, so the immutable
        # spec and the resourceVersion stay as they were.
        version = claim["metadata"]["resourceVersion"]
        again = cluster.kubectl("apply", "-f", str(SEED_EXAMPLE)).stdout
        assert again.splitlines() == [
            f"namespace/{seed_ns} unchanged",
            f"networkattachmentdefinition.k8s.cni.cncf.io/{seed_ns} unchanged",
            "resourceclaim.resource.k8s.io/static-vf-claim configured",
            "pod/pod0 unchanged",
        ]
        claim = cluster.kubectl_json("get", "resourceclaim", "static-vf-claim", "-n", seed_ns)
        assert claim["metadata"]["resourceVersion"] == version
        # Nobody allocated the claim and no slice offers a device: the scheduler
        # tries to allocate it itself and cannot, so the pod stays unscheduled.
        message = wait_until(
            lambda: unschedulable_message(cluster, seed_ns, "pod0"),
            timeout=60,
            what="pod0 to be reported unschedulable",
        )
        fact(f"seed pod with an unallocated claim and no slices: PodScheduled=False: {message}")
        assert "cannot allocate all claims" in message
    finally:
        cluster.kubectl(
            "delete", "pod", "pod0", "-n", seed_ns, "--grace-period=0", "--force",
            "--ignore-not-found",
        )  # fmt: skip
        cluster.kubectl("delete", "namespace", seed_ns, "--timeout=90s")


# --- (b) + (c) a claim allocated by somebody else is honoured and outlives its pods ----------


def test_externally_allocated_claim_is_honoured_and_outlives_its_pods(claims: Claims) -> None:
    node_a = claims.cluster.node_names[1]
    claims.apply(claim_manifest("static"))
    claims.allocate("static", allocation_for(node_a))
    allocated = claims.get("resourceclaim", "static")
    assert allocated["status"]["allocation"] == allocation_for(node_a)
    assert allocated["metadata"].get("finalizers") is None

    first = claims.apply(pod_manifest("first", "static"))
    node, took = claims.wait_scheduled("first")
    assert node == node_a
    wait_until(
        lambda: claims.reserved_uids("static") == [first["metadata"]["uid"]],
        timeout=30,
        what="the first pod in status.reservedFor",
    )
    claim = claims.get("resourceclaim", "static")
    assert claim["status"]["reservedFor"] == [
        {"resource": "pods", "name": "first", "uid": first["metadata"]["uid"]}
    ]
    assert claim["status"]["allocation"] == allocation_for(node_a)
    assert claim["metadata"].get("finalizers") is None
    fact(f"external allocation honoured: pod bound to {node} {took:.2f}s after create")

    claims.delete_pod("first")
    t0 = time.monotonic()
    wait_until(
        lambda: claims.reserved_uids("static") == [] or None,
        timeout=60,
        what="status.reservedFor to empty after the pod was deleted",
    )
    fact(f"no finalizer: reservedFor emptied {time.monotonic() - t0:.2f}s after pod deletion")
    after = claims.get("resourceclaim", "static")
    assert after["status"]["allocation"] == allocation_for(node_a)
    assert "reservedFor" not in after["status"]

    second = claims.apply(pod_manifest("second", "static"))
    node, _ = claims.wait_scheduled("second")
    assert node == node_a
    wait_until(
        lambda: claims.reserved_uids("static") == [second["metadata"]["uid"]],
        timeout=30,
        what="the second pod in status.reservedFor",
    )
    assert claims.get("resourceclaim", "static")["status"]["allocation"] == allocation_for(node_a)


def test_delete_protection_finalizer_makes_the_claim_controller_deallocate(
    claims: Claims,
) -> None:
    node_a = claims.cluster.node_names[0]
    claims.apply(claim_manifest("protected", finalizers=(KUBE_DELETE_PROTECTION,)))
    claims.allocate("protected", allocation_for(node_a))
    pod = claims.apply(pod_manifest("user", "protected"))
    node, _ = claims.wait_scheduled("user")
    assert node == node_a
    wait_until(
        lambda: claims.reserved_uids("protected") == [pod["metadata"]["uid"]],
        timeout=30,
        what="the pod in status.reservedFor",
    )

    claims.delete_pod("user")
    t0 = time.monotonic()
    claim = claims.wait_deallocated("protected", "the claim controller to clear status.allocation")
    fact(
        "delete-protection finalizer: allocation cleared "
        f"{time.monotonic() - t0:.2f}s after pod deletion; "
        f"finalizers now {claim['metadata'].get('finalizers')}, status {claim['status']}"
    )
    assert claim["status"] == {}
    assert KUBE_DELETE_PROTECTION not in (claim["metadata"].get("finalizers") or [])


# --- (d) the pod cannot run where the claim is ---------------------------------------------------


def test_pod_that_cannot_run_on_the_claims_node_makes_the_scheduler_deallocate(
    claims: Claims,
) -> None:
    node_a, node_b = claims.cluster.node_names[:2]
    claims.apply(claim_manifest("pinned"))
    claims.allocate("pinned", allocation_for(node_a))
    t0 = time.monotonic()
    claims.apply(pod_manifest("elsewhere", "pinned", node_selector=node_b))
    claim = claims.wait_deallocated("pinned", "the scheduler's PostFilter to deallocate the claim")
    took = time.monotonic() - t0
    assert claim["status"] == {}
    assert claim["metadata"].get("finalizers") is None
    pod = claims.get("pod", "elsewhere")
    assert "nodeName" not in pod["spec"]
    messages = [e["message"] for e in claims.events_for("Pod", "elsewhere")]
    fact(f"pod can't reach the claim's node: allocation cleared {took:.2f}s after pod create")
    for m in messages:
        fact(f"  pod event: {m}")
    assert any("resourceclaim not available on the node" in m for m in messages), messages

    # Now unallocated, with no ResourceSlice offering a device, the pod stays
    # unscheduled; the scheduler's next attempt (whenever it comes) can only fail.
    assert "nodeName" not in claims.get("pod", "elsewhere")["spec"]
    assert claims.get("resourceclaim", "pinned")["status"] == {}


# --- (e) the race the operator must win --------------------------------------------------------


def test_scheduler_allocates_an_unallocated_claim_itself_when_a_slice_offers_a_device(
    claims: Claims, namespace: str
) -> None:
    cluster = claims.cluster
    node = cluster.node_names[0]
    slice_name = f"{namespace}-{node}"
    resource_slice = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": slice_name},
        "spec": {
            "driver": DRIVER_NAME,
            "nodeName": node,
            "pool": {"name": f"{namespace}-{node}", "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "vf-7"}],
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(resource_slice))
    try:
        claims.apply(claim_manifest("unallocated"))
        pod = claims.apply(pod_manifest("racer", "unallocated"))
        bound, took = claims.wait_scheduled("racer")
        claim = claims.get("resourceclaim", "unallocated")
        fact(
            f"unallocated claim + matching slice: scheduler allocated it itself within {took:.2f}s,"
            f" finalizers {claim['metadata'].get('finalizers')},"
            f" results {claim['status']['allocation']['devices']['results']}"
        )
        assert bound == node
        assert claim["metadata"]["finalizers"] == [KUBE_DELETE_PROTECTION]
        assert claim["status"]["allocation"]["devices"]["results"] == [
            {
                "request": "vf",
                "driver": DRIVER_NAME,
                "pool": f"{namespace}-{node}",
                "device": "vf-7",
            }
        ]
        assert claim["status"]["reservedFor"] == [
            {"resource": "pods", "name": "racer", "uid": pod["metadata"]["uid"]}
        ]
    finally:
        claims.delete_pod("racer")
        cluster.kubectl("delete", "resourceslice", slice_name, "--ignore-not-found")
