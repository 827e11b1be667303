"""The Helm chart on real nodes: helm install, the seed's claim gets net1, helm uninstall.

A dev cluster of its own with two real nodes (as tests/e2e/test_seed_scenario.py),
the driver installed with ``helm install ... --set kubeletPlugin.backend=simulated``
(the image the dev cluster serves under its published name), then the seed
scenario's core (the demo's own steps: the static claim allocated, pod0 running
with net1 holding an IP from the NAD's IPAM), then ``helm uninstall``, after which
nothing of ours is left but what Helm keeps on purpose, the CRDs (Helm never
deletes a chart's ``crds/``; the NAD CRD may be Multus' too, and deleting it would
delete every NAD), and the namespace ``--create-namespace`` made, with the operator's
leader-election Lease in it; the README's ``kubectl delete namespace`` takes both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from real_node_cluster import RealNodes
from sriov_dra.constants import DRIVER_NAME
from sriov_dra_devcluster import helm_chart
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.demo_scenario import NAMESPACE, SUBNET, ClaimView
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE, DriverDeployment
from sriov_dra_devcluster.paths import HELM_CHART
from sriov_dra_devcluster.waiting import wait_until
from sriov_dra_devcluster.walkthrough import Walkthrough

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

IMAGE = "ghcr.io/sriov-dra/sriov-dra:0.1.0"
NAD_CRD = "network-attachment-definitions.k8s.cni.cncf.io"
# What the control plane puts in every namespace (Events, its records, expire on their own).
NOT_OURS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
# State the operator writes at run time, not an object of the release: its leader-election
# Lease, released (not deleted, as client-go does) when it stops; it goes with the namespace.
RUNTIME_STATE = {("Lease", "sriov-dra-operator")}


class Installed:
    """The cluster, the driver as Helm installed it, and the walkthrough's steps."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cluster = cluster
        self.driver = DriverDeployment(cluster)
        self.transcript: list[str] = []
        self.walk = Walkthrough(cluster, self.driver, echo=self.transcript.append)
        self.passed: set[str] = set()

    def needs(self, *tests: str) -> None:
        missing = [t for t in tests if t not in self.passed]
        if missing:
            pytest.fail(f"needs {', '.join(missing)} to have passed first", pytrace=False)


@pytest.fixture(scope="module")
def installed(real_nodes: RealNodes) -> Iterator[Installed]:
    """The module's cluster and the walkthrough; prints its transcript at the end."""
    result = Installed(real_nodes.cluster)
    try:
        yield result
    finally:
        print("\n".join(["", "--- walkthrough transcript ---", *result.transcript]))


def listed(cluster: DevCluster, *, namespaced: bool) -> list[dict[str, Any]]:
    """Every object of every listable resource type (in the driver's namespace if namespaced)."""
    scope = "--namespaced=true" if namespaced else "--namespaced=false"
    kinds = cluster.kubectl("api-resources", "--verbs=list", scope, "-o", "name").stdout.split()
    where = ["-n", SYSTEM_NAMESPACE] if namespaced else []
    items: list[dict[str, Any]] = cluster.kubectl_json("get", ",".join(kinds), *where)["items"]
    return items


def our_slices(cluster: DevCluster) -> list[dict[str, Any]]:
    """The ResourceSlices of our DRA driver."""
    items = cluster.kubectl_json("get", "resourceslices")["items"]
    return [s for s in items if s["spec"]["driver"] == DRIVER_NAME]


def chart_crds() -> list[dict[str, Any]]:
    """The CRDs of the chart's crds/ folder."""
    return [
        doc
        for path in sorted((HELM_CHART / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def kept_with_crds() -> set[str]:
    """What stays because Helm keeps the chart's CRDs: each of them, and the APIService the
    API server serves for each of their group versions (named after our driver for ours)."""
    kept: set[str] = set()
    for crd in chart_crds():
        kept.add(f"CustomResourceDefinition/{crd['metadata']['name']}")
        spec = crd["spec"]
        kept.update(f"APIService/{v['name']}.{spec['group']}" for v in spec["versions"])
    return kept


def ours(obj: dict[str, Any]) -> bool:
    """A cluster-scoped object of this driver: named after it or after its DRA driver name.

    Not the Namespace: Helm's ``--create-namespace`` made it, and Helm leaves it.
    """
    name = obj["metadata"]["name"]
    return obj["kind"] != "Namespace" and ("sriov-dra" in name or DRIVER_NAME in name)


def test_0_helm_install_runs_the_driver_from_the_dev_clusters_image(installed: Installed) -> None:
    said = helm_chart.install(installed.cluster, helm_chart.SIMULATED)
    assert "STATUS: deployed" in said
    installed.driver.wait_for_slices(120)
    pods = installed.driver.pods()
    agents = [p for p in pods if p["metadata"]["name"].startswith("sriov-dra-agent-")]
    assert sorted(p["spec"]["nodeName"] for p in agents) == ["node-1", "node-2"]
    for pod in pods:
        for status in pod["status"]["containerStatuses"]:
            assert (status["image"], status["ready"]) == (IMAGE, True), pod["metadata"]["name"]
    installed.passed.add("install")


def test_1_the_seed_claim_is_allocated_and_pod0_gets_net1_from_the_nads_ipam(
    installed: Installed,
) -> None:
    installed.needs("install")
    installed.walk.step1_apply()
    claim: ClaimView = installed.walk.step2_claim()
    assert claim.allocated_by_operator
    assert claim.reserved_for == ["pod0"]
    interfaces = installed.walk.step4_interfaces()
    assert list(interfaces["net1"].addresses) == claim.net1_ips
    assert all(ipaddress.IPv4Interface(ip).network == SUBNET for ip in claim.net1_ips)
    # Released while the driver still runs: the claim's finalizer waits for its agent.
    installed.cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=180s")
    installed.passed.add("seed")


def test_2_helm_uninstall_leaves_nothing_of_ours_but_the_crds_and_namespace(
    installed: Installed,
) -> None:
    installed.needs("install", "seed")
    cluster = installed.cluster
    assert cluster.kubectl_json("get", "resourceclaims", "-A")["items"] == []
    helm_chart.uninstall(cluster)
    assert installed.driver.pods() == []
    # The kubelets wipe the ResourceSlices of a plugin that is gone for good.
    wait_until(
        lambda: not our_slices(cluster),
        timeout=180,
        what="the kubelets to delete our ResourceSlices",
    )
    left_cluster_wide = {
        f"{o['kind']}/{o['metadata']['name']}" for o in listed(cluster, namespaced=False) if ours(o)
    }
    # Helm never deletes the CRDs of a chart's crds/ folder (ours are the policy kinds and
    # the NAD CRD, which Multus may own too), nor the APIServices serving them: only those stay.
    assert left_cluster_wide <= kept_with_crds()
    assert f"CustomResourceDefinition/deviceattributes.{DRIVER_NAME}" in left_cluster_wide
    assert cluster.kubectl("get", "crd", NAD_CRD, check=False).returncode == 0
    left = {
        (o["kind"], o["metadata"]["name"])
        for o in listed(cluster, namespaced=True)
        if o["kind"] != "Event"
    }
    assert left - NOT_OURS <= RUNTIME_STATE
    releases = helm_chart.helm("list", "-n", SYSTEM_NAMESPACE, "-q", kubeconfig=cluster.kubeconfig)
    assert releases.stdout.split() == []
    # The README's last step: the namespace, and the operator's Lease with it.
    cluster.kubectl("delete", "namespace", SYSTEM_NAMESPACE, "--timeout=120s")
    assert cluster.kubectl("get", "namespace", SYSTEM_NAMESPACE, check=False).returncode != 0
