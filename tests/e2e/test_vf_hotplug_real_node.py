"""Live rediscovery in the agent DaemonSet on a real node: VFs added and removed on node-1's
simulated NIC are published and unpublished within a bound shorter than the agent's
periodic rescan (60 s, the manifests' default), and the agent's log says which hardware
events woke it: the inotify watch on the simulated tree mounted into its container, and
the rtnetlink watch of the node's netns.

A cluster of its own (two real nodes), the driver installed as users install it
(``kubectl apply -k manifests/simulated``, the image built here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from real_node_cluster import RealNodes
from sriov_dra.constants import DRIVER_NAME
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE, DriverDeployment
from sriov_dra_devcluster.waiting import wait_until
from sriov_dra_devcluster.walkthrough import Walkthrough

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

NODE, PF = "node-1", "eth0"
BOUND_SECONDS = 30.0
"""Half the periodic rescan: only a hardware event can make a change show within it."""


@pytest.fixture(scope="module")
def driver(real_nodes: RealNodes) -> Iterator[DriverDeployment]:
    deployment = DriverDeployment(real_nodes.cluster)
    Walkthrough(real_nodes.cluster, deployment, echo=lambda _line: None).step0_install()
    yield deployment


def devices(cluster: DevCluster, node: str) -> int:
    items = cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.nodeName={node}"
    )["items"]
    return sum(
        len(item["spec"].get("devices") or [])
        for item in items
        if item["spec"]["driver"] == DRIVER_NAME
    )


def agent_log(cluster: DevCluster, node: str) -> list[dict[str, Any]]:
    pods = cluster.kubectl_json(
        "get", "pods", "-n", SYSTEM_NAMESPACE, "-l", "app.kubernetes.io/name=sriov-dra-agent",
        "--field-selector", f"spec.nodeName={node}",
    )["items"]  # fmt: skip
    (pod,) = pods
    out = cluster.kubectl("logs", "-n", SYSTEM_NAMESPACE, pod["metadata"]["name"]).stdout
    records = []
    for line in out.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def test_vfs_added_and_removed_on_the_node_are_published_at_once(
    real_nodes: RealNodes, driver: DriverDeployment
) -> None:
    cluster = real_nodes.cluster
    nic = driver.nic(NODE)
    assert devices(cluster, NODE) == 4  # eth0 and eth1, 2 VFs each

    nic.set_num_vfs(PF, 8)
    wait_until(
        lambda: devices(cluster, NODE) == 10,
        timeout=BOUND_SECONDS,
        what=f"the 6 new VFs of {PF} published",
    )
    nic.set_num_vfs(PF, 1)
    wait_until(
        lambda: devices(cluster, NODE) == 3,
        timeout=BOUND_SECONDS,
        what=f"the 7 removed VFs of {PF} unpublished",
    )
    nic.set_num_vfs(PF, 2)
    wait_until(lambda: devices(cluster, NODE) == 4, timeout=BOUND_SECONDS, what="back to 4 VFs")
    woken = [
        r for r in agent_log(cluster, NODE) if r.get("message") == "hardware changed; rescanning"
    ]
    sources = {str(first).split()[0] for r in woken for first in list(r.get("first") or [])}
    assert {"sysfs-tree", "netlink"} <= sources, woken
    print(f"{len(woken)} wake-ups on {NODE}; sources {sorted(sources)}")
