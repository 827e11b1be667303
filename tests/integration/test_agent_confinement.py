"""Each node's agent is confined to its own node by the API server (manifests/base policy).

The shipped manifests (namespace, ServiceAccounts, the agent's RBAC and
``policy-agent-confinement.yaml``) are applied as they are. A Pod of the agent's
ServiceAccount is bound to each kwok node, and a TokenRequest token bound to that
Pod is what a DaemonSet pod's projected token is: the API server writes the Pod's
node into the token's ``authentication.kubernetes.io/node-name`` extra. With node
A's token, node B's slice and node B's claim status are refused with the rule's
name; node A's own slice and claim status are written as the agent writes them.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.node_selector import node_selector
from sriov_dra_devcluster import kubeconfigs
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.paths import BASE_MANIFESTS
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

NAMESPACE = "sriov-dra"
AGENT_SA = "sriov-dra-agent"
SLICES_RULE = "rule agent-own-node-slices"
CLAIMS_RULE = "rule agent-own-node-claims"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
OTHER_DRIVER = "gpu.example.com"


@dataclass(frozen=True)
class Agent:
    """The agent identity of one node: its node, its pod-bound token, a kubeconfig with it."""

    node: str
    token: str
    kubeconfig: Path


@dataclass(frozen=True)
class Agents:
    a: Agent
    b: Agent
    unbound: Agent
    """The agent's ServiceAccount with a token bound to no Pod: no node in it."""


def agent_pod(name: str, node: str) -> dict[str, Any]:
    """A Pod of the agent's ServiceAccount on ``node`` (kwok runs it; only its binding counts)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serviceAccountName": AGENT_SA,
            "nodeName": node,
            "containers": [{"name": "agent", "image": "ghcr.io/sriov-dra/sriov-dra:0.1.0"}],
        },
    }


def agent_identity(cluster: DevCluster, node: str, pod: str | None) -> Agent:
    """A TokenRequest token of the agent's ServiceAccount, bound to ``pod`` when given."""
    bound = ("--bound-object-kind=Pod", f"--bound-object-name={pod}") if pod else ()
    token = cluster.kubectl(
        "create", "token", AGENT_SA, "-n", NAMESPACE, "--duration=1h", *bound
    ).stdout.strip()
    ca_cert = cluster.state_dir / "kubeconfigs" / "ca.crt"
    ca_cert.parent.mkdir(parents=True, exist_ok=True)
    ca_cert.write_bytes(kubeconfigs.ca_of(cluster.kubeconfig))
    kubeconfig = kubeconfigs.write_token_kubeconfig(
        cluster.state_dir / "kubeconfigs" / f"confinement-{pod or 'unbound'}.kubeconfig",
        server=cluster.api_server_url,
        ca_cert=ca_cert,
        user=f"system:serviceaccount:{NAMESPACE}:{AGENT_SA}",
        token=token,
    )
    return Agent(node, token, kubeconfig)


def slice_manifest(name: str, node: str, driver: str = DRIVER_NAME) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name, "labels": {"sriov-dra-test": "confinement"}},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "0000-3b-02-0"}],
        },
    }


def allocation(node: str) -> dict[str, Any]:
    """A VF of ours and another driver's device on ``node``, pinned there as the operator does."""
    results = [
        {"request": "vf", "driver": DRIVER_NAME, "pool": node, "device": "0000-3b-02-0"},
        {"request": "gpu", "driver": OTHER_DRIVER, "pool": node, "device": "0000-3b-02-0"},
    ]
    return {"devices": {"results": results}, "nodeSelector": node_selector(node)}


def entry(node: str, reason: str, driver: str = DRIVER_NAME) -> dict[str, Any]:
    """A status.devices entry as the agent writes them (one condition is enough here)."""
    condition = {
        "type": "Ready", "status": "False", "reason": reason, "message": reason,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    return {"driver": driver, "pool": node, "device": "0000-3b-02-0", "conditions": [condition]}


def kubectl_as(
    cluster: DevCluster, kubeconfig: Path, *args: str, body: dict[str, Any] | None = None
) -> tuple[bool, str]:
    """Run kubectl as that identity: (succeeded, stderr)."""
    result = cluster.kubectl(
        *args, input=json.dumps(body) if body is not None else None, check=False,
        kubeconfig=kubeconfig,
    )  # fmt: skip
    return result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def agents(cluster: DevCluster) -> Iterator[Agents]:
    """The manifests' identity and policy applied; node A's and node B's agent tokens."""
    for manifest in (
        "namespace.yaml",
        "serviceaccounts.yaml",
        "rbac-agent.yaml",
        "policy-agent-confinement.yaml",
    ):
        cluster.kubectl("apply", "-f", str(BASE_MANIFESTS / manifest))
    node_a, node_b = cluster.node_names[:2]
    pods = {"a": ("confinement-agent-a", node_a), "b": ("confinement-agent-b", node_b)}
    cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List",
                          "items": [agent_pod(name, node) for name, node in pods.values()]}),
    )  # fmt: skip
    found = Agents(
        a=agent_identity(cluster, node_a, pods["a"][0]),
        b=agent_identity(cluster, node_b, pods["b"][0]),
        unbound=agent_identity(cluster, "", None),
    )
    # The policy is enforced once the API server's policy informer has it: until then
    # node A's write of node B's slice still goes through (and is deleted again).
    probe = slice_manifest("confinement-probe", node_b)

    def enforced() -> str | None:
        ok, err = kubectl_as(cluster, found.a.kubeconfig, "create", "-f", "-", body=probe)
        if ok:
            cluster.kubectl("delete", "resourceslice", "confinement-probe", "--wait=false")
            return None
        return err if SLICES_RULE in err else None

    wait_until(enforced, timeout=60, what="the agent confinement policy to be enforced")
    try:
        yield found
    finally:
        # The session's other tests run agents with tokens bound to no Pod (the stack).
        cluster.kubectl("delete", "-f", str(BASE_MANIFESTS / "policy-agent-confinement.yaml"))
        cluster.kubectl(
            "delete", "resourceslices", "-l", "sriov-dra-test=confinement", "--wait=false",
            check=False,
        )  # fmt: skip
        cluster.kubectl(
            "delete", "pod", *(name for name, _ in pods.values()), "-n", NAMESPACE,
            "--grace-period=0", "--force", check=False,
        )  # fmt: skip


def test_a_pod_bound_token_names_the_pods_node(cluster: DevCluster, agents: Agents) -> None:
    for agent in (agents.a, agents.b):
        review = json.loads(
            cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=agent.kubeconfig).stdout
        )
        user = review["status"]["userInfo"]
        assert user["username"] == f"system:serviceaccount:{NAMESPACE}:{AGENT_SA}"
        assert user["extra"][NODE_NAME_EXTRA] == [agent.node]


def test_an_agent_writes_its_own_nodes_slices_and_no_other(
    cluster: DevCluster, agents: Agents
) -> None:
    a, b = agents.a, agents.b
    own, other = f"confinement-{a.node}", f"confinement-{b.node}"

    # Node A's own slice: created, replaced, deleted, as the slice publisher does.
    ok, err = kubectl_as(
        cluster, a.kubeconfig, "create", "-f", "-", body=slice_manifest(own, a.node)
    )
    assert ok, err
    replaced = cluster.kubectl_json("get", "resourceslice", own)
    replaced["spec"]["devices"].append({"name": "0000-3b-02-1"})
    ok, err = kubectl_as(cluster, a.kubeconfig, "replace", "-f", "-", body=replaced)
    assert ok, err
    ok, err = kubectl_as(cluster, a.kubeconfig, "delete", "resourceslice", own)
    assert ok, err

    # Node B's slice: node A may not create it ...
    ok, err = kubectl_as(
        cluster, a.kubeconfig, "create", "-f", "-", body=slice_manifest(other, b.node)
    )
    assert not ok
    assert (
        f"{SLICES_RULE}: the sriov-dra agent of node {a.node} may write only ResourceSlices of "
        f"driver {DRIVER_NAME} with spec.nodeName {a.node}; ResourceSlice {other} is not one "
        "(CREATE); fix: only the agent of the slice's node publishes it"
    ) in err
    # ... nor replace or delete it once node B's agent published it.
    ok, err = kubectl_as(
        cluster, b.kubeconfig, "create", "-f", "-", body=slice_manifest(other, b.node)
    )
    assert ok, err
    theirs = cluster.kubectl_json("get", "resourceslice", other)
    theirs["spec"]["devices"] = []
    ok, err = kubectl_as(cluster, a.kubeconfig, "replace", "-f", "-", body=theirs)
    assert not ok and f"ResourceSlice {other} is not one (UPDATE)" in err
    ok, err = kubectl_as(cluster, a.kubeconfig, "delete", "resourceslice", other)
    assert not ok and f"ResourceSlice {other} is not one (DELETE)" in err
    assert cluster.kubectl_json("get", "resourceslice", other)["spec"]["devices"] != []

    # Its own node, but another driver's slice.
    foreign = slice_manifest(f"confinement-foreign-{a.node}", a.node, driver="gpu.example.com")
    ok, err = kubectl_as(cluster, a.kubeconfig, "create", "-f", "-", body=foreign)
    assert not ok and SLICES_RULE in err


def test_an_agent_token_without_a_node_writes_nothing(cluster: DevCluster, agents: Agents) -> None:
    body = slice_manifest(f"confinement-unbound-{agents.a.node}", agents.a.node)
    ok, err = kubectl_as(cluster, agents.unbound.kubeconfig, "create", "-f", "-", body=body)
    assert not ok
    assert (
        f"{SLICES_RULE}: the sriov-dra agent's token names no node (no {NODE_NAME_EXTRA} "
        "extra); fix: run the agent as the DaemonSet, whose pod-bound token names its node"
    ) in err


@pytest.fixture
def claims_on_both_nodes(cluster: DevCluster, namespace: str, agents: Agents) -> str:
    """Claim ``on-a`` allocated on node A and ``on-b`` on node B (written as the operator would)."""
    for name, node in (("on-a", agents.a.node), ("on-b", agents.b.node)):
        claim = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"devices": {"requests": [
                {"name": "vf", "exactly": {"deviceClassName": DRIVER_NAME}},
                {"name": "gpu", "exactly": {"deviceClassName": OTHER_DRIVER}},
            ]}},
        }  # fmt: skip
        cluster.kubectl("create", "-f", "-", input=json.dumps(claim))
        cluster.kubectl(
            "patch", "resourceclaim", name, "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"allocation": allocation(node)}}),
        )  # fmt: skip
    return namespace


def write_status_as(
    cluster: DevCluster,
    agent: Agent,
    namespace: str,
    name: str,
    status: dict[str, Any],
    *,
    apply: bool = True,
) -> tuple[bool, str]:
    """Write ``status`` on resourceclaims/status as ``agent``: (succeeded, the API's message).

    Server-side apply, as the agent writes its entries (``apply``), or a merge patch. Over
    HTTP: kubectl would first read the status, which the agent's RBAC does not allow.
    """
    body: dict[str, Any] = {"status": status}
    if apply:
        body |= {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                 "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
    request = urllib.request.Request(
        f"{cluster.api_server_url}/apis/resource.k8s.io/v1/namespaces/{namespace}/"
        f"resourceclaims/{name}/status?fieldManager=sriov-dra-agent-{agent.node}",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={
            "Authorization": f"Bearer {agent.token}",
            "Content-Type": "application/apply-patch+yaml"
            if apply
            else "application/merge-patch+json",
        },
    )
    context = ssl.create_default_context(cafile=str(cluster.state_dir / "kubeconfigs" / "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30):
            return True, ""
    except urllib.error.HTTPError as exc:
        return False, str(json.loads(exc.read())["message"])


def test_an_agent_reports_on_its_own_nodes_claims_and_no_other(
    cluster: DevCluster, agents: Agents, claims_on_both_nodes: str
) -> None:
    namespace = claims_on_both_nodes
    a = agents.a

    # Its own node's claim: our driver's status.devices entries are its to write.
    ok, err = write_status_as(
        cluster, a, namespace, "on-a", {"devices": [entry(a.node, "Pending")]}
    )
    assert ok, err
    ok, err = write_status_as(
        cluster, a, namespace, "on-a", {"devices": [entry(a.node, "Released")]}
    )
    assert ok, err

    # Node B's claim: refused, naming the rule and the fix.
    ok, err = write_status_as(
        cluster, a, namespace, "on-b", {"devices": [entry(agents.b.node, "Released")]}
    )
    assert not ok
    assert (
        f"{CLAIMS_RULE}: the sriov-dra agent of node {a.node} may write the status of claims "
        f"allocated on node {a.node} only; ResourceClaim {namespace}/on-b is not allocated "
        "there; fix: only the agent of the claim's node reports on it"
    ) in err
    assert (
        "devices"
        not in cluster.kubectl_json("get", "resourceclaim", "on-b", "-n", namespace)["status"]
    )


@pytest.mark.parametrize(
    ("what", "status"),
    [
        ("drops the allocation", {"allocation": None}),
        ("reserves the claim for a pod", {"reservedFor": [
            {"resource": "pods", "name": "p", "uid": "00000000-0000-0000-0000-000000000001"}]}),
    ],
)  # fmt: skip
def test_an_agent_changes_nothing_in_its_claims_status_but_our_entries(
    cluster: DevCluster,
    agents: Agents,
    claims_on_both_nodes: str,
    what: str,
    status: dict[str, Any],
) -> None:
    namespace = claims_on_both_nodes
    a = agents.a
    before = cluster.kubectl_json("get", "resourceclaim", "on-a", "-n", namespace)["status"]
    ok, err = write_status_as(cluster, a, namespace, "on-a", status, apply=False)
    assert not ok, what
    assert (
        f"{CLAIMS_RULE}: the sriov-dra agent of node {a.node} may change only the "
        f"status.devices entries of driver {DRIVER_NAME} of ResourceClaim {namespace}/on-a, "
        "not status.allocation, status.reservedFor or other drivers' entries"
    ) in err, what
    after = cluster.kubectl_json("get", "resourceclaim", "on-a", "-n", namespace)["status"]
    assert after == before


def test_an_agent_leaves_other_drivers_entries_alone(
    cluster: DevCluster, agents: Agents, claims_on_both_nodes: str
) -> None:
    namespace = claims_on_both_nodes
    a = agents.a
    theirs = entry(a.node, "Ready", driver=OTHER_DRIVER)
    cluster.kubectl(
        "patch", "resourceclaim", "on-a", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"devices": [theirs]}}),
    )  # fmt: skip
    changed = {**theirs, "conditions": [{**theirs["conditions"][0], "reason": "Broken"}]}
    for devices in ([entry(a.node, "Pending")], [entry(a.node, "Pending"), changed]):
        # A merge patch replaces the list: the other driver's entry dropped, then changed.
        ok, err = write_status_as(cluster, a, namespace, "on-a", {"devices": devices}, apply=False)
        assert not ok
        assert f"{CLAIMS_RULE}: " in err and "other drivers' entries" in err
    status = cluster.kubectl_json("get", "resourceclaim", "on-a", "-n", namespace)["status"]
    assert status["devices"] == [theirs]
    # Server-side apply of its own entry, as the agent writes, leaves theirs alone.
    ok, err = write_status_as(cluster, a, namespace, "on-a", {"devices": [entry(a.node, "Ready")]})
    assert ok, err


def test_an_agent_writes_no_claim_metadata(
    cluster: DevCluster, agents: Agents, claims_on_both_nodes: str
) -> None:
    # The hand-over signal is in status, so the agent needs no write on the claim itself.
    ok, err = kubectl_as(
        cluster, agents.a.kubeconfig, "annotate", "resourceclaim", "on-a", "-n",
        claims_on_both_nodes, "example.com/x=y",
    )  # fmt: skip
    assert not ok
    assert (
        f'User "system:serviceaccount:{NAMESPACE}:{AGENT_SA}" cannot patch resource '
        '"resourceclaims" in API group "resource.k8s.io"'
    ) in err
