"""The Go driver's own demos, applied unchanged on real nodes: each keeps its promises.

The manifests are ``tests/data/upstream-demos`` (byte for byte the files of
github.com/k8snetworkplumbingwg/dra-driver-sriov ``demo/``). On a dev cluster of its
own with two real nodes, the driver is installed as users install it (the seed
walkthrough's step 0), the cluster is shaped as those demos expect
(``UpstreamWalkthrough.setup``: policy namespaces, the example GPU driver), and
each demo is applied with ``kubectl apply -f``, checked (pods Running; a VF
interface with an address of the NAD's subnet per VF; the demo's own promise) and
deleted with ``kubectl delete -f`` until no claim, VF or lease is left: the steps
``make demo`` prints. A demo that does not do what it shows fails its test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from real_node_cluster import RealNodes
from sriov_dra.constants import DRIVER_NAME
from sriov_dra_devcluster.deployment import DriverDeployment
from sriov_dra_devcluster.upstream_demos import DEMOS, UpstreamDemo
from sriov_dra_devcluster.upstream_walkthrough import UpstreamWalkthrough
from sriov_dra_devcluster.walkthrough import Walkthrough

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture(scope="module")
def upstream(real_nodes: RealNodes) -> Iterator[UpstreamWalkthrough]:
    """The driver installed and the cluster shaped for the demos; prints the transcript."""
    transcript: list[str] = []
    cluster = real_nodes.cluster
    walk = Walkthrough(cluster, DriverDeployment(cluster), echo=transcript.append)
    try:
        walk.step0_install()
        result = UpstreamWalkthrough(walk)
        result.setup()
        yield result
        result.summary()
    finally:
        print("\n".join(["", "--- upstream demos transcript ---", *transcript]))


@pytest.mark.parametrize("demo", DEMOS, ids=[d.name for d in DEMOS])
def test_the_upstream_demo_runs_unchanged(
    upstream: UpstreamWalkthrough, demo: UpstreamDemo
) -> None:
    outcome = upstream.run(demo)
    assert outcome.failure == ""
    assert outcome.pods == demo.facts().pods
    # One line per pod, naming its VF interfaces and devices; released after the delete.
    assert len(outcome.checked) == outcome.pods
    assert all(" VF " in line for line in outcome.checked)
    assert outcome.released_seconds > 0


def test_afterwards_every_vf_is_free_and_published(upstream: UpstreamWalkthrough) -> None:
    cluster = upstream.cluster
    claims = cluster.kubectl_json("get", "resourceclaims", "-A")["items"]
    assert [c["metadata"]["name"] for c in claims] == []
    slices = cluster.kubectl_json("get", "resourceslices")["items"]
    published = {
        node: sorted(
            d["name"]
            for s in slices
            if s["spec"]["driver"] == DRIVER_NAME and s["spec"]["nodeName"] == node
            for d in s["spec"].get("devices") or []
        )
        for node in upstream.walk.driver.nodes
    }
    # No policy is left, so every node publishes its 4 VFs (2 on each of eth0, eth1) again.
    assert {node: len(devices) for node, devices in published.items()} == {
        node: 4 for node in upstream.walk.driver.nodes
    }
